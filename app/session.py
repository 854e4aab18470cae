"""The chat session behind the app: vault, current conversation, branches and the engine.

Every method may block (disk, KDF, model): the UI calls them from thread workers.
Incognito conversations live only in this object's memory and are never written.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from app import chat, pack_chat, paths, transfer
from app.packs import Pack
from app.settings import AppSettings
from models.discovery import ModelInfo
from models.engine import ChatMessage, Engine, Generation, StopReason, TurnStats
from models.settings import SamplingSettings
from storage import crypto
from storage import export as export_fmt
from storage.schema import Conversation, Message, SearchHit
from storage.vault import Vault

INCOGNITO_ID = "incognito"
SETTINGS_KEY = "app"


def vault_folder() -> Path:
    return paths.data_dir() / "vault"


@dataclass
class PendingTurn:
    """A turn ready to generate: what the model sees and where the answer goes."""

    messages: list[ChatMessage]
    parent_id: str | None
    """The user message the answer replies to."""
    generation: Generation | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    response: str | None = None
    """A pack safety rule's fixed answer: the model is not asked."""
    notices: list[pack_chat.Notice] = field(default_factory=list)
    """Safety rules that fired on the user's message."""
    sources: list[dict[str, Any]] = field(default_factory=list)
    """Reference chunks sent with the user's message."""
    prefix_s: float = 0.0
    """Seconds spent computing the pack's prefix state before this turn (first use only)."""


class ChatSession:
    """One user's unlocked state. Create it locked; ``unlock`` or ``create_vault`` first."""

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder or vault_folder()
        self.vault: Vault | None = None
        self.settings = AppSettings()
        self.conversation: Conversation | None = None
        self.thread: list[Message] = []
        self.model: ModelInfo | None = None
        self.engine: Engine | None = None
        self.pack: Pack | None = None
        """The domain pack of the current conversation, if any."""
        self.purged_at_unlock = 0

    # -- vault ----------------------------------------------------------------

    @property
    def vault_exists(self) -> bool:
        return (self.folder / "vault.hdr").exists()

    @property
    def unlocked(self) -> bool:
        return self.vault is not None and self.vault.is_open

    def create_vault(self, passphrase: bytearray, kdf: crypto.KdfParams | None = None) -> None:
        try:
            paths.ensure_private_dir(self.folder.parent)
            self.vault = Vault.create(self.folder, passphrase, kdf)
        finally:
            crypto.wipe(passphrase)
        self._after_unlock()

    def unlock(self, passphrase: bytearray, *, accept_rollback: bool = False) -> None:
        try:
            self.vault = Vault.open(self.folder, passphrase, accept_rollback=accept_rollback)
        finally:
            crypto.wipe(passphrase)
        self._after_unlock()

    def _after_unlock(self) -> None:
        stored = self.store.get_setting(SETTINGS_KEY, {})
        try:
            self.settings = AppSettings.model_validate(stored)
        except ValueError:
            self.settings = AppSettings()
        pack_chat.install_builtins(self.store)
        if self.settings.retention_days:
            cutoff = datetime.now(UTC) - timedelta(days=self.settings.retention_days)
            self.purged_at_unlock = self.store.delete_older_than(cutoff)

    def lock(self) -> None:
        """Close the vault (wiping its key), forget decrypted state and the KV cache."""
        if self.vault is not None:
            self.vault.close()
        self.vault = None
        self.conversation = None
        self.thread = []
        self.pack = None
        if self.engine is not None:
            self.engine.clear_cache()

    @property
    def store(self):  # -> Store
        if self.vault is None or not self.vault.is_open:
            raise RuntimeError("the vault is locked")
        return self.vault.store

    def save_settings(self, settings: AppSettings) -> None:
        self.settings = settings
        self.store.set_setting(SETTINGS_KEY, settings.model_dump(mode="json"))

    # -- model ----------------------------------------------------------------

    def available_models(self) -> list[ModelInfo]:
        return chat.find_models()

    def load_model(self, info: ModelInfo | None = None) -> Engine:
        """Load ``info`` (or the default) and record it on the current conversation."""
        info = info or chat.pick_model(self.settings.default_model)
        self.engine = chat.load_engine(info, self.settings.load)
        self.model = info
        conv = self.conversation
        if conv is not None and conv.id != INCOGNITO_ID:
            self.store.update_conversation(
                conv.id, model_name=info.name, model_sha256=chat.model_sha256(info)
            )
            self.conversation = self.store.get_conversation(conv.id)
        return self.engine

    def model_for_conversation(self) -> ModelInfo:
        """The model remembered for the current conversation, else the default one."""
        wanted = self.conversation.model_name if self.conversation else None
        if wanted:
            for info in self.available_models():
                if info.name == wanted and info.usable:
                    return info
        return chat.pick_model(self.settings.default_model)

    # -- conversations --------------------------------------------------------

    def conversations(self) -> list[Conversation]:
        return self.store.list_conversations()

    def available_packs(self) -> list[pack_chat.InstalledPack]:
        return pack_chat.installed(self.store)

    def new_conversation(self, *, incognito: bool = False, pack_id: str | None = None) -> None:
        """Start an empty conversation; it is written only when the first message is sent."""
        self.thread = []
        self.pack = pack_chat.get(self.store, pack_id).pack if pack_id else None
        if incognito:
            now = datetime.now(UTC)
            self.conversation = Conversation(
                id=INCOGNITO_ID, title="Incognito", created=now, updated=now
            )
        else:
            self.conversation = None

    @property
    def incognito(self) -> bool:
        return self.conversation is not None and self.conversation.id == INCOGNITO_ID

    def open(self, conversation_id: str, at_message: str | None = None) -> None:
        """Show a conversation; with ``at_message``, the branch that contains it."""
        self.conversation = self.store.get_conversation(conversation_id)
        self.pack = self._pack_of(self.conversation)
        if at_message and at_message not in {m.id for m in self.store.thread(conversation_id)}:
            self.store.select_branch(at_message)
            self.conversation = self.store.get_conversation(conversation_id)
        self.thread = self.store.thread(conversation_id)

    def _pack_of(self, conv: Conversation) -> Pack | None:
        if not conv.pack_id:
            return None
        try:
            return pack_chat.get(self.store, conv.pack_id).pack
        except Exception:  # removed or no longer valid: the conversation still opens
            return None

    def rename(self, conversation_id: str, title: str) -> None:
        self.store.rename_conversation(conversation_id, title)
        if self.conversation and self.conversation.id == conversation_id:
            self.conversation = self.store.get_conversation(conversation_id)

    def toggle_pin(self, conversation_id: str) -> None:
        conv = self.store.get_conversation(conversation_id)
        self.store.set_pinned(conversation_id, not conv.pinned)

    def delete_conversation(self, conversation_id: str) -> None:
        self.store.delete_conversation(conversation_id)
        if self.conversation and self.conversation.id == conversation_id:
            self.conversation = None
            self.thread = []

    def delete_message(self, message_id: str) -> None:
        if self.incognito:
            idx = next(i for i, m in enumerate(self.thread) if m.id == message_id)
            self.thread = self.thread[:idx]
            return
        self.store.delete_message(message_id)
        assert self.conversation is not None
        self.thread = self.store.thread(self.conversation.id)

    def search(self, query: str) -> list[SearchHit]:
        return self.store.search(query)

    def sampling(self) -> SamplingSettings:
        conv = self.conversation
        if conv is not None and conv.settings.get("sampling"):
            try:
                return SamplingSettings.model_validate(conv.settings["sampling"])
            except ValueError:
                pass
        return self.pack.sampling if self.pack is not None else self.settings.sampling

    def set_sampling(self, sampling: SamplingSettings) -> None:
        conv = self.conversation
        if conv is None or conv.id == INCOGNITO_ID:
            self.settings = self.settings.model_copy(update={"sampling": sampling})
            self.save_settings(self.settings)
            return
        settings = dict(conv.settings)
        settings["sampling"] = sampling.model_dump()
        self.store.update_conversation(conv.id, settings=settings)
        self.conversation = self.store.get_conversation(conv.id)

    # -- export and import ----------------------------------------------------

    def redaction_preview(self, conversation_id: str) -> str:
        _, redaction = transfer.build_export(self.store, [conversation_id], redact=True)
        return redaction.summary() if redaction else "nothing to redact"

    def export_conversation(
        self,
        conversation_id: str,
        out: Path,
        *,
        passphrase: str | None = None,
        recipients: list[str] | None = None,
        form: str = "md",
        redact: bool = False,
    ) -> None:
        """Encrypt a conversation to ``out`` (vault key by default); atomic, in memory."""
        keys = [export_fmt.parse_recipient(r) for r in recipients or []]
        if passphrase is None and not keys:
            keys = [transfer.ensure_identity(self.store).to_public()]
        doc, _ = transfer.build_export(self.store, [conversation_id], redact=redact)
        blob = export_fmt.encrypt(
            transfer.render(doc, form), recipients=keys, passphrase=passphrase
        )
        export_fmt.write_encrypted(out, blob)

    def import_file(self, path: Path, passphrase: str | None = None) -> int:
        """Add the conversations of an export as new ones; returns how many."""
        data = export_fmt.read_limited(path)
        header = export_fmt.read_header(data)
        identity = None
        if "scrypt" not in header.kinds:
            identity = transfer.vault_identity(self.store)
            if identity is None:
                raise export_fmt.ExportError("this vault has no age identity to decrypt with")
        plain = export_fmt.decrypt(
            data, identities=[identity] if identity else [], passphrase=passphrase
        )
        return len(transfer.import_conversations(self.store, export_fmt.parse_document(plain)))

    # -- branches -------------------------------------------------------------

    def siblings(self, message_id: str) -> list[Message]:
        if self.incognito:
            return [m for m in self.thread if m.id == message_id]
        return self.store.siblings(message_id)

    def switch_branch(self, message_id: str, step: int) -> None:
        """Show the previous (-1) or next (+1) alternative of a message."""
        sibs = self.siblings(message_id)
        ids = [m.id for m in sibs]
        if len(ids) < 2:
            return
        target = ids[(ids.index(message_id) + step) % len(ids)]
        assert self.conversation is not None
        self.store.select_branch(target)
        self.thread = self.store.thread(self.conversation.id)

    # -- turns ----------------------------------------------------------------

    def _add(self, role: str, content: str, parent_id: str | None, stats=None) -> Message:
        if self.incognito:
            msg = Message(
                id=uuid.uuid4().hex,
                conversation_id=INCOGNITO_ID,
                parent_id=parent_id,
                role=role,
                content=content,
                created=datetime.now(UTC),
                stats=stats,
            )
            self.thread.append(msg)
            return msg
        if self.conversation is None:
            info = self.model
            self.conversation = self.store.create_conversation(
                chat.title_for(content),
                model_name=info.name if info else None,
                model_sha256=chat.model_sha256(info) if info else None,
                pack_id=self.pack.id if self.pack else None,
                pack_version=self.pack.version if self.pack else None,
                settings={"sampling": self.sampling().model_dump()},
            )
        msg = self.store.add_message(
            self.conversation.id, role, content, parent_id=parent_id, stats=stats
        )
        self.conversation = self.store.get_conversation(self.conversation.id)
        self.thread = self.store.thread(self.conversation.id)
        return msg

    def _turn(self, upto: list[Message], parent_id: str | None) -> PendingTurn:
        if self.pack is None:
            return PendingTurn(messages=chat.to_chat(upto), parent_id=parent_id)
        stats = (upto[-1].stats or {}) if upto else {}
        notices = [pack_chat.Notice(**n) for n in stats.get("safety", [])]
        response = next((n.message for n in notices if n.action == "respond"), None)
        return PendingTurn(
            messages=pack_chat.model_messages(self.pack, upto),
            parent_id=parent_id,
            response=response,
            notices=notices,
            sources=list(stats.get("sources", [])),
        )

    def _count_tokens(self, text: str) -> int:
        if self.engine is not None:
            return len(self.engine.tokenize(text))
        return len(text) // 3 + 1  # before a model is loaded: a cautious estimate

    def _user_stats(self, text: str, lookup: str | None = None) -> dict[str, Any] | None:
        """Run the pack's input rules and find sources for a new user message."""
        if self.pack is None:
            return None
        grounded = pack_chat.check_question(self.store, self.pack, text, self._count_tokens, lookup)
        return grounded.user_stats or None

    def prefetch(self, draft: str, cancel: threading.Event | None = None) -> int:
        """While the user types in a pack conversation: find the sources for the draft and
        evaluate the prompt up to where the question goes, so that sending it evaluates little
        more than the question (if the final text finds the same sources). Blocking; nothing
        is written. Returns the tokens evaluated."""
        if not self.unlocked or self.pack is None or self.engine is None:
            return 0
        if len(draft.strip()) < 8:
            return 0
        pack_chat.warm(self.engine, self.pack)
        grounded = pack_chat.check_question(self.store, self.pack, draft, self._count_tokens)
        if grounded.response is not None or "sources" not in grounded.user_stats:
            return 0
        pending = pack_chat.pending_question("", {"sources": grounded.user_stats["sources"]})
        messages = pack_chat.model_messages(self.pack, [*self.thread, pending])
        return self.engine.prefill(messages, cancel)

    def send(self, text: str, lookup: str | None = None) -> PendingTurn:
        """Save the user's message (acknowledged before generation) and prepare the turn.

        ``lookup``: what to search the pack's references with, if not the text itself (the
        values of a template)."""
        parent = self.thread[-1].id if self.thread else None
        self._add("user", text, parent, stats=self._user_stats(text, lookup))
        return self._turn(self.thread, self.thread[-1].id)

    def edit(self, message_id: str, text: str) -> PendingTurn:
        """Resend an edited user message as a new branch beside the original."""
        idx = next(i for i, m in enumerate(self.thread) if m.id == message_id)
        original = self.thread[idx]
        if self.incognito:
            self.thread = self.thread[:idx]
        self._add("user", text, original.parent_id, stats=self._user_stats(text))
        return self._turn(self.thread, self.thread[-1].id)

    def regenerate(self) -> PendingTurn | None:
        """Prepare a new answer to the last user message (the old one stays a branch)."""
        idx = max((i for i, m in enumerate(self.thread) if m.role == "user"), default=None)
        if idx is None:
            return None
        # Show the branch the new answer extends; a saved old answer stays a branch (in
        # incognito, nothing is kept, so it is simply dropped).
        upto = self.thread[: idx + 1]
        self.thread = upto
        return self._turn(upto, upto[-1].id)

    def generate(self, turn: PendingTurn) -> Generation:
        """Start the answer (blocking until the context is fitted); iterate it for text.

        A pack's fixed safety response is the answer as is; otherwise the pack's prefix
        state is restored (computed once per model and pack version)."""
        if turn.response is not None:
            turn.generation = Generation(iter([turn.response]), TurnStats())
            return turn.generation
        if self.engine is None:
            self.load_model(self.model_for_conversation())
        assert self.engine is not None
        if self.pack is not None:
            _, turn.prefix_s = pack_chat.warm(self.engine, self.pack)
        turn.generation = self.engine.chat(turn.messages, self.sampling(), cancel=turn.cancel)
        return turn.generation

    def finish(self, turn: PendingTurn, text: str) -> Message:
        """Save the answer (a stopped one too, marked by its stop reason), with the pack's
        notices and the sources it was given."""
        assert turn.generation is not None
        stats = turn.generation.stats
        if turn.cancel.is_set():
            stats.stop_reason = StopReason.CANCELLED
        if turn.prefix_s:
            # The first conversation with a pack also waited for its prefix to be computed:
            # that is part of the wait for the first token.
            stats.prefix_prefill_s = turn.prefix_s
            stats.time_to_first_token_s += turn.prefix_s
        data: dict[str, Any] = stats.model_dump(mode="json")
        if turn.response is not None:
            data = {"fixed_response": True}
        notices = list(turn.notices)
        if self.pack is not None and turn.response is None:
            notices += pack_chat.answer_notices(self.pack, text)
            if turn.sources:
                data["sources"] = [
                    {k: s[k] for k in ("n", "ref_id", "title", "source")} for s in turn.sources
                ]
        if notices:
            data["safety"] = [n.as_dict() for n in notices]
        return self._add("assistant", text, turn.parent_id, stats=data)
