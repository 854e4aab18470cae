"""Chat templates that work with every model family, and prompts whose only control tokens
are the template's own.

- The model's Jinja template runs in jinja2's immutable sandbox (as llama-cpp-python does);
  a template that does not compile or that fails is a one-line :class:`TemplateError`.
- Messages are normalised before rendering: consecutive messages of the same role are merged
  (a turn that failed leaves two user messages in a row, which Gemma and Mistral templates
  refuse), and a system prompt is folded into the first user message when the template
  rejects system messages (Gemma 2) or drops them silently (the first Phi-3). Both are found
  by rendering probes, never by the model's name.
- Contents are rendered as placeholders, so the rendered prompt is a sequence of template
  text (whose markers become control tokens) and message text (tokenized with special-token
  parsing off). A message, a source or an imported transcript that contains ``<|im_end|>``
  stays text.
- Without a template, a fallback whose markers exist in the vocabulary: ChatML when the
  vocabulary has its tokens, else a plain ``User:``/``Assistant:`` transcript.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

CHATML_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
PLAIN_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] + '\n\n' }}"
    "{% elif message['role'] == 'user' %}{{ 'User: ' + message['content'] + '\n' }}"
    "{% else %}{{ 'Assistant: ' + message['content'] + '\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)
PLAIN_STOP = ("\nUser:",)
"""Where a plain-transcript answer ends (a base model would go on with the next turn)."""

_OPEN, _CLOSE = "\ue000", "\ue001"
_SLOT = re.compile(f"{_OPEN}(\\d+){_CLOSE}")


class TemplateError(Exception):
    """The chat template does not compile or fails on a conversation (one line)."""


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(getattr(exc, "message", None) or exc).split())
    return text[:200] or type(exc).__name__


def placeholder(i: int) -> str:
    """The stand-in for message ``i``'s content while rendering."""
    return f"{_OPEN}{i}{_CLOSE}"


def merge_same_role(messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Consecutive messages of one role as one (their contents joined by a blank line)."""
    out: list[dict[str, Any]] = []
    for m in messages:
        if out and out[-1]["role"] == m["role"]:
            prev = out[-1]
            out[-1] = {**prev, "content": f"{prev['content']}\n\n{m['content']}"}
        else:
            out.append(dict(m))
    return out


@dataclass
class Rendered:
    """A prompt as template text and message contents, in order."""

    parts: list[tuple[bool, str]]
    """(is_content, text) pieces; template pieces carry the markers."""

    @property
    def text(self) -> str:
        return "".join(t for _, t in self.parts)


class ChatTemplate:
    """A compiled chat template and how it treats system messages."""

    def __init__(
        self,
        source: str,
        *,
        bos_token: str = "",
        eos_token: str = "",
        name: str = "model",
        stop: Sequence[str] = (),
    ) -> None:
        """Compile ``source`` and probe it.

        Raises:
            TemplateError: it does not compile, or fails on a plain one-question
                conversation.
        """
        from jinja2 import TemplateError as JinjaError
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        self.source = source
        self.name = name
        self.stop = tuple(stop)
        self.bos_token = bos_token
        self.eos_token = eos_token
        env = ImmutableSandboxedEnvironment(
            trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
        )

        def raise_exception(message: str) -> None:
            raise TemplateError(str(message))

        def strftime_now(fmt: str) -> str:
            return datetime.now().strftime(fmt)

        env.globals["raise_exception"] = raise_exception
        env.globals["strftime_now"] = strftime_now
        try:
            self._template = env.from_string(source)
        except (JinjaError, RecursionError, MemoryError, ValueError, TypeError) as exc:
            raise TemplateError(f"the chat template does not compile: {_one_line(exc)}") from exc
        self.fold_system = False
        probe = [{"role": "user", "content": "u"}]
        self._render_raw(probe)  # raises TemplateError for a template that always fails
        try:
            with_system = self._render_raw([{"role": "system", "content": "s"}, *probe])
            self.fold_system = placeholder(0) not in with_system
        except TemplateError:
            self.fold_system = True

    def _render_raw(self, messages: Sequence[dict[str, Any]]) -> str:
        payload = [{"role": m["role"], "content": placeholder(i)} for i, m in enumerate(messages)]
        try:
            return str(
                self._template.render(
                    messages=payload,
                    bos_token=self.bos_token,
                    eos_token=self.eos_token,
                    add_generation_prompt=True,
                )
            )
        except TemplateError as exc:
            raise TemplateError(f"the chat template refused the conversation: {exc}") from exc
        except Exception as exc:  # a template may raise anything (jinja2, sandbox, type errors)
            raise TemplateError(f"the chat template failed: {_one_line(exc)}") from exc

    def normalise(self, messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Merged roles, and the system prompt folded in when the template needs it."""
        merged = merge_same_role(messages)
        if not self.fold_system or not merged or merged[0]["role"] != "system":
            return merged
        system, rest = merged[0], merged[1:]
        if rest and rest[0]["role"] == "user":
            first = rest[0]
            rest[0] = {**first, "content": f"{system['content']}\n\n{first['content']}"}
            return rest
        return [{**system, "role": "user"}, *rest]

    def render(self, messages: Sequence[dict[str, Any]]) -> Rendered:
        """Render ``messages`` (dicts with ``role`` and ``content``) as template text and
        contents.

        Raises:
            TemplateError: the template failed on this conversation.
        """
        msgs = self.normalise(messages)
        raw = self._render_raw(msgs)
        parts: list[tuple[bool, str]] = []
        pos = 0
        for m in _SLOT.finditer(raw):
            if m.start() > pos:
                parts.append((False, raw[pos : m.start()]))
            i = int(m.group(1))
            if i < len(msgs):
                parts.append((True, str(msgs[i]["content"])))
            pos = m.end()
        if pos < len(raw):
            parts.append((False, raw[pos:]))
        return Rendered(parts)


def fallback_template(
    has_token: Callable[[str], bool], bos_token: str, eos_token: str
) -> tuple[str, str, tuple[str, ...]]:
    """For a model without a template: (template, its name, stop strings). ChatML only when
    the vocabulary has ChatML's markers as tokens; else a plain transcript."""
    if has_token("<|im_start|>") and has_token("<|im_end|>"):
        return CHATML_TEMPLATE, "ChatML (the model has no template)", ()
    return PLAIN_TEMPLATE, "plain transcript (the model has no template)", PLAIN_STOP


THINK_OPEN, THINK_CLOSE = "<think>", "</think>"


class ReasoningSplitter:
    """Separates ``<think>…</think>`` reasoning from the answer in a stream of text pieces.

    Reasoning is recognised only at the start of the answer (after whitespace), or from the
    start when the prompt already opened it (templates that end with ``<think>``)."""

    def __init__(self, *, inside: bool = False) -> None:
        self.reasoning = ""
        self._state = "inside" if inside else "start"
        self._buf = ""

    def feed(self, text: str) -> str:
        """The answer text in ``text`` (reasoning is kept in :attr:`reasoning`)."""
        self._buf += text
        out = ""
        while self._buf:
            if self._state == "start":
                stripped = self._buf.lstrip()
                if not stripped:
                    return out
                if stripped.startswith(THINK_OPEN):
                    self._buf = stripped[len(THINK_OPEN) :]
                    self._state = "inside"
                elif THINK_OPEN.startswith(stripped):
                    return out  # maybe the start of the tag: wait
                else:
                    self._buf = stripped  # the answer starts at its first visible character
                    self._state = "answer"
            elif self._state == "inside":
                at = self._buf.find(THINK_CLOSE)
                if at == -1:
                    keep = _partial_suffix(self._buf, THINK_CLOSE)
                    self.reasoning += self._buf[: len(self._buf) - keep]
                    self._buf = self._buf[len(self._buf) - keep :]
                    return out
                self.reasoning += self._buf[:at]
                self._buf = self._buf[at + len(THINK_CLOSE) :].lstrip()
                self._state = "answer" if self._buf else "after"
            elif self._state == "after":
                self._buf = self._buf.lstrip()
                if self._buf:
                    self._state = "answer"
            else:
                out += self._buf
                self._buf = ""
        return out

    def flush(self) -> str:
        """What is left: an unfinished tag is answer text; unfinished reasoning stays
        reasoning."""
        rest, self._buf = self._buf, ""
        if self._state == "inside":
            self.reasoning += rest
            return ""
        return rest if self._state != "after" else rest.lstrip()


def _partial_suffix(text: str, tag: str) -> int:
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-n:]):
            return n
    return 0
