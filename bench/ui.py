"""Is the UI ever the bottleneck? Measured headless, each app in a process of its own (as
the user's is; the CLI is one too), in one run:

1. A fake engine yields 5,000 tokens as fast as it can into the chat view: how many tokens
   per second the UI absorbs (until the last one is on screen), and the worst gap between
   two ticks of the UI's event loop (a stalled frame).
2. The real embedded model writes the same 300-token answer through the app and through
   `bastion ask` (alternating, 11 pairs, or BENCH_ROUNDS): the app's decode speed over the
   CLI's, and the share of a core the UI thread used meanwhile.
3. The worst frame gap with the real model, from one more app with a 60 Hz frame clock
   writing three answers in one conversation (the clock itself costs a few percent, so it is
   kept out of the speed rounds): while the model writes (from the first text shown to the
   last), and apart, at each turn's start (before the first token) and end (the answer
   rendered as Markdown).
4. Esc 0.5 s into a ~3,000-token prompt: until the engine is free and the status says
   stopped (three apps).
The vault holds 150 saved conversations (the sidebar lists them), as after months of use.
Prints a table, then, as the last line, one JSON object.

    .venv/bin/python bench/ui.py
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from textual import events

from bastion.storage.crypto import KdfParams
from bastion.storage.vault import Vault
from bastion.tui.app import BastionApp
from bastion.tui.chat import ChatScreen

ROOT = Path(__file__).resolve().parent.parent


def _fake_engine() -> type:
    """The tests' fake engine (tests/fakes.py), loaded by path: the bench measures the UI alone
    with it."""
    spec = importlib.util.spec_from_file_location(
        "bastion_bench_fakes", ROOT / "tests" / "fakes.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.FakeEngine


FakeEngine = _fake_engine()

PW = "bench passphrase"
PROMPT = "Write a long, detailed story about a lighthouse keeper and a storm."
GO_ON = "Go on with the story: what happens the next morning?"
TOKENS = 300
# Pairs of rounds: on this shared two-core machine one pair's ratio varies by +-10% even with
# a UI that draws nothing while the model writes, so a median needs about a dozen pairs.
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "11"))
# The frame clock's answers: one conversation, each turn's prompt longer than the last.
CLOCKED_TURNS = 3
# Conversations already in the vault, listed in the sidebar.
SAVED_CONVERSATIONS = 150


class FrameClock:
    """Records the gaps between ticks of a 60 Hz timer on the UI's event loop."""

    def __init__(self) -> None:
        self.last = time.perf_counter()
        self.gaps: list[tuple[float, float]] = []  # (when the gap ended, its length)

    def tick(self) -> None:
        now = time.perf_counter()
        self.gaps.append((now, now - self.last))
        self.last = now

    def reset(self) -> None:
        self.last = time.perf_counter()
        self.gaps.clear()

    def worst_between(self, start: float = 0.0, end: float = float("inf")) -> float:
        """The longest gap that ended between ``start`` and ``end`` (by default, any)."""
        return max((g for t, g in self.gaps if start < t <= end), default=0.0)


async def _unlock(pilot, app) -> None:
    await pilot.click("#pass1")
    for ch in PW:
        await pilot.press("space" if ch == " " else ch)
    await pilot.press("enter")
    while not isinstance(app.screen, ChatScreen):
        await pilot.pause(0.05)
    await app.workers.wait_for_complete()
    await pilot.pause(0.1)


class Recorder:
    """When answers finish (a message hook), and when visible updates arrive (the chat screen's
    handing over of streamed text, on the UI thread; :meth:`watch` installs it)."""

    def __init__(self) -> None:
        self.event: asyncio.Event | None = None
        self.updates: list[float] = []
        self.cpu: list[float] = []  # the UI thread's CPU time at each update
        self.failure = ""

    def __call__(self, message: object) -> None:
        if isinstance(message, ChatScreen.GenerationFinished) and self.event is not None:
            self.event.set()
        elif isinstance(message, ChatScreen.GenerationFailed):
            self.failure = message.reason
            if self.event is not None:
                self.event.set()

    def watch(self, screen: ChatScreen) -> None:
        if "_show_streamed" in vars(screen):
            return  # already watched
        show = screen._show_streamed

        def shown(text: str, tokens: int, tokens_per_s: float) -> None:
            show(text, tokens, tokens_per_s)
            self.updates.append(time.perf_counter())
            self.cpu.append(time.thread_time())  # on the UI thread

        screen._show_streamed = shown  # type: ignore[method-assign]

    def ui_cpu_share(self) -> float:
        """The UI thread's CPU time over the wall time while the answer was written (first
        update to last): the share of a core the UI took from the model."""
        u, c = self.updates, self.cpu
        return (c[-1] - c[0]) / (u[-1] - u[0]) if len(u) > 2 and u[-1] > u[0] else 0.0

    def updates_per_s(self) -> float:
        """Visible updates per second while the answer was written (first to last)."""
        u = self.updates
        return (len(u) - 1) / (u[-1] - u[0]) if len(u) > 2 and u[-1] > u[0] else 0.0


def _key(app, key: str) -> None:
    """Press ``key`` as a terminal does: the driver posts the key to the app, which gives it to
    the focused widget. Not ``pilot.press``: after the key, the test driver waits for the whole
    process to be idle, polling every 20 ms for up to two seconds, and while the model writes it
    is never idle, so those polls (and their wake-ups of the UI's event loop) would be counted
    as the app's own cost."""
    char = {"enter": "\r", "escape": "\x1b"}[key]
    app.post_message(events.Key(key, char))


async def _send_and_wait(pilot, app, text: str, recorder: Recorder) -> float:
    """Send ``text``; return the seconds until the answer is complete on screen.

    Waits on an event, not by polling with ``pilot.pause()``: every pause forces a screen
    update, and 20 forced updates a second would cost the app the very time it is measured on.
    """
    screen = app.screen
    composer = screen.query_one("#composer")
    composer.text = text
    composer.focus()
    recorder.event = asyncio.Event()
    recorder.updates.clear()
    recorder.cpu.clear()
    recorder.watch(screen)
    t0 = time.perf_counter()
    _key(app, "enter")
    await recorder.event.wait()
    if recorder.failure:
        raise SystemExit(f"bench: the answer failed: {recorder.failure}")
    while screen.generating:
        await asyncio.sleep(0.02)
    return time.perf_counter() - t0


async def ui_absorb(n_tokens: int) -> tuple[float, float]:
    app = BastionApp()
    clock = FrameClock()
    recorder = Recorder()
    async with app.run_test(size=(120, 40), message_hook=recorder) as pilot:
        await _unlock(pilot, app)
        app.session.engine = FakeEngine(tokens=n_tokens, text="tok ")
        app.set_interval(1 / 60, clock.tick)
        await pilot.pause(0.1)
        clock.reset()
        seconds = await _send_and_wait(pilot, app, "stream please", recorder)
        worst = clock.worst_between()
        app.session.lock()
    return n_tokens / seconds, worst


async def _new_plain_conversation(pilot) -> None:
    await pilot.press("ctrl+n")
    await pilot.pause(0.2)
    await pilot.press("enter")  # the pack picker: no pack
    await pilot.pause(0.2)


async def app_decode(*, clock_on: bool, turns: int = 1) -> list[dict[str, float]]:
    """Answers from the real model through the app, ``turns`` of them in one conversation
    (the first to PROMPT, then "go on"). With ``clock_on``, a 60 Hz timer records the
    longest times the UI thread could not run it: while the model wrote (from the first text
    shown to the last), at the turn's start (the question and the answer box mounted, the
    prompt read) and at its end (the answer rendered as Markdown). The clock wakes the event
    loop 60 times a second, which costs the app a few percent of decode speed, so the speed
    ratio is measured in rounds without it."""
    app = BastionApp()
    clock = FrameClock()
    recorder = Recorder()
    out: list[dict[str, float]] = []
    async with app.run_test(size=(120, 40), message_hook=recorder) as pilot:
        await _unlock(pilot, app)
        await _new_plain_conversation(pilot)
        if clock_on:
            app.set_interval(1 / 60, clock.tick)
        for turn in range(turns):
            clock.reset()
            await _send_and_wait(pilot, app, PROMPT if turn == 0 else GO_ON, recorder)
            await app.workers.wait_for_complete()
            if clock_on:
                await asyncio.sleep(0.5)  # the finished answer rendered as Markdown
            meta = app.session.thread[-1].meta
            row = {
                "decode_tokens_per_s": meta.decode_tokens_per_s,
                "generated": meta.generated_tokens,
                "prompt_tokens": meta.prompt_tokens,
                "updates_per_s": recorder.updates_per_s(),
                "ui_cpu_share": recorder.ui_cpu_share(),
            }
            if clock_on:
                first, last = recorder.updates[0], recorder.updates[-1]
                row["gap_writing_s"] = clock.worst_between(first, last)
                row["gap_start_s"] = clock.worst_between(end=first)
                row["gap_end_s"] = clock.worst_between(last)
            out.append(row)
    return out


async def cancel_during_prefill() -> tuple[float, int, int]:
    """Esc 0.5 s into reading a ~3,000-token prompt: milliseconds until the engine is free
    and the status says stopped; and how far the prompt got (evaluated, total)."""
    app = BastionApp()
    recorder = Recorder()
    words = " ".join(f"item{i} blue" for i in range(600))  # about 3,000 tokens
    async with app.run_test(size=(120, 40), message_hook=recorder) as pilot:
        await _unlock(pilot, app)
        await _new_plain_conversation(pilot)
        screen = app.screen
        assert app.session.engine is not None
        composer = screen.query_one("#composer")
        composer.text = f"Summarise this list: {words}"
        composer.focus()
        recorder.event = asyncio.Event()
        _key(app, "enter")
        await asyncio.sleep(0.5)
        from bastion.tui.widgets import StatusBar

        bar = screen.query_one(StatusBar)
        engine = app.session.engine
        # Both ends are timed where they happen, not when the test driver next looks: the
        # status by a watcher on the UI thread, the engine by a thread polling its lock.
        stopped_at: list[float] = []
        freed_at: list[float] = []

        def status_changed(state: str) -> None:
            if state == "stopped" and not stopped_at:
                stopped_at.append(time.perf_counter())

        screen.watch(bar, "state", status_changed, init=False)

        def poll_engine() -> None:
            while True:
                if engine._lock.acquire(blocking=False):
                    engine._lock.release()
                    freed_at.append(time.perf_counter())
                    return
                time.sleep(0.001)

        if not engine._lock.locked():
            raise SystemExit("bench: the prompt was not being read 0.5 s after sending")
        poller = threading.Thread(target=poll_engine)
        poller.start()
        t0 = time.perf_counter()
        _key(app, "escape")
        while not stopped_at:
            await asyncio.sleep(0.01)
        poller.join()
        elapsed = max(stopped_at[0], freed_at[0]) - t0
        await app.workers.wait_for_complete()
        meta = app.session.thread[-1].meta
        return elapsed * 1000, engine.llama.n_tokens, meta.prompt_tokens


def cli_decode(env: dict[str, str]) -> tuple[float, int]:
    proc = subprocess.run(
        [
            str(Path(sys.executable).parent / "bastion"),
            "ask",
            PROMPT,
            "--stats",
            "--max-tokens",
            str(TOKENS),
            "--temperature",
            "0",
            "--seed",
            "1",
        ],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    m = re.search(r"(\d+) generated.*?([\d.]+) tok/s", proc.stderr)
    assert m, proc.stderr
    return float(m.group(2)), int(m.group(1))


def _child(mode: str) -> None:
    """One measurement in this process (a fresh one, as the user's app is): JSON on stdout."""
    if mode == "absorb":
        absorbed, worst = asyncio.run(ui_absorb(5000))
        result: object = {"tokens_per_s": absorbed, "worst_gap_s": worst}
    elif mode == "app":
        result = asyncio.run(app_decode(clock_on=False))[0]
    elif mode == "clock":
        result = asyncio.run(app_decode(clock_on=True, turns=CLOCKED_TURNS))
    elif mode == "cancel":
        ms, evaluated, total = asyncio.run(cancel_during_prefill())
        result = {"ms": ms, "evaluated": evaluated, "total": total}
    else:
        raise SystemExit(f"bench: unknown child {mode!r}")
    print(json.dumps(result))


def _run_child(mode: str, env: dict[str, str]) -> Any:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", mode],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"bench: the {mode} round failed: {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ)
        env["BASTION_DATA_DIR"] = str(Path(tmp) / "data")
        env["BASTION_CACHE_DIR"] = str(Path(tmp) / "cache")
        with Vault.create(Path(tmp) / "data" / "vault", PW, KdfParams(8 * 1024, 1)) as v:
            v.store.set_setting(
                "app",
                {
                    "auto_lock_minutes": 0,
                    "sampling": {"temperature": 0, "max_tokens": TOKENS, "seed": 1},
                },
            )
            for i in range(SAVED_CONVERSATIONS):  # a vault after months of use
                conv = v.store.create_conversation(f"Saved conversation {i}: notes on case {i}")
                question = v.store.add_message(conv.id, "user", "A question.", parent_id=None)
                v.store.add_message(conv.id, "assistant", "An answer.", parent_id=question.id)
        fake = _run_child("absorb", env)
        absorbed, worst_fake = fake["tokens_per_s"], fake["worst_gap_s"]
        _progress(f"fake engine: {absorbed:.0f} tok/s absorbed")
        apps: list[dict[str, float]] = []
        cli_rates: list[float] = []
        cli_gens: list[int] = []
        for i in range(ROUNDS):  # alternate which goes first in each pair
            pair = [
                lambda: apps.append(_run_child("app", env)),
                lambda: cli_gens.append(_cli(env, cli_rates)),
            ]
            for run in pair if i % 2 == 0 else reversed(pair):
                run()
            _progress(
                f"round {i + 1}/{ROUNDS}: app {apps[-1]['decode_tokens_per_s']:.1f}, "
                f"cli {cli_rates[-1]:.1f} tok/s"
            )
        clocked: list[dict[str, float]] = _run_child("clock", env)
        for row in clocked:
            _progress(
                f"frame clock, turn with a {row['prompt_tokens']:.0f}-token prompt: worst gap "
                f"{row['gap_writing_s'] * 1000:.0f} ms while writing, "
                f"{row['gap_start_s'] * 1000:.0f} ms at the turn's start, "
                f"{row['gap_end_s'] * 1000:.0f} ms at its end"
            )
        cancels = []
        for _ in range(3):
            cancels.append(_run_child("cancel", env))
            _progress(f"cancel during prefill: {cancels[-1]['ms']:.0f} ms")
    med = statistics.median
    model_rate = med(cli_rates)
    app_rates = [a["decode_tokens_per_s"] for a in apps]
    pairs = [a / c for a, c in zip(app_rates, cli_rates, strict=True)]
    gaps = [r["gap_writing_s"] for r in clocked]
    start_gaps = [r["gap_start_s"] for r in clocked]
    end_gaps = [r["gap_end_s"] for r in clocked]
    result = {
        "ui_tokens_per_s": round(absorbed, 1),
        "model_tokens_per_s": round(model_rate, 1),
        "ui_speedup_over_model": round(absorbed / model_rate, 1),
        "ui_updates_per_s": round(med(a["updates_per_s"] for a in apps), 1),
        "ui_thread_cpu_share_while_writing": round(med(a["ui_cpu_share"] for a in apps), 3),
        "worst_frame_gap_fake_ms": round(worst_fake * 1000, 1),
        "worst_frame_gap_model_ms": round(max(gaps) * 1000, 1),
        "worst_frame_gap_model_ms_per_round": [round(g * 1000, 1) for g in gaps],
        "frame_clock_prompt_tokens_per_round": [int(r["prompt_tokens"]) for r in clocked],
        "worst_frame_gap_turn_start_ms": round(max(start_gaps) * 1000, 1),
        "worst_frame_gap_turn_start_ms_per_round": [round(g * 1000, 1) for g in start_gaps],
        "worst_frame_gap_turn_end_ms": round(max(end_gaps) * 1000, 1),
        "worst_frame_gap_turn_end_ms_per_round": [round(g * 1000, 1) for g in end_gaps],
        "cancel_during_prefill_ms": round(med(c["ms"] for c in cancels), 1),
        "cancel_during_prefill_ms_per_round": [round(c["ms"], 1) for c in cancels],
        "cancel_prompt_evaluated_of_total": [[c["evaluated"], c["total"]] for c in cancels],
        "app_tokens_per_s": round(med(app_rates), 1),
        "cli_tokens_per_s": round(model_rate, 1),
        "app_over_cli_ratio": round(med(pairs), 3),
        "app_over_cli_per_pair": [round(p, 3) for p in pairs],
        "app_tokens_per_s_with_frame_clock": round(
            med(r["decode_tokens_per_s"] for r in clocked), 1
        ),
        "saved_conversations": SAVED_CONVERSATIONS,
        "app_generated": [int(a["generated"]) for a in apps],
        "cli_generated": cli_gens,
    }
    print(
        f"UI absorbs {result['ui_tokens_per_s']} tok/s from a fake engine "
        f"({result['ui_speedup_over_model']}x the model's {result['model_tokens_per_s']})"
    )
    print(
        f"visible updates while the model writes: {result['ui_updates_per_s']}/s, "
        f"the UI thread busy {result['ui_thread_cpu_share_while_writing']:.1%} of the time"
    )
    print(
        f"worst frame gap: {result['worst_frame_gap_fake_ms']} ms (fake), "
        f"{result['worst_frame_gap_model_ms']} ms (real model)"
    )
    print(f"cancel during prefill: {result['cancel_during_prefill_ms']} ms")
    print(f"{'decode tok/s':16}{'app':>10}{'cli':>10}{'ratio':>8}")
    for a, c in zip(app_rates, cli_rates, strict=True):
        print(f"{'':16}{a:>10.1f}{c:>10.1f}{a / c:>8.3f}")
    print(
        f"{'median':16}{result['app_tokens_per_s']:>10}{result['cli_tokens_per_s']:>10}"
        f"   pair-ratio median {result['app_over_cli_ratio']}"
    )
    print(json.dumps(result))


def _progress(line: str) -> None:
    """Progress on stderr, so a long run shows where it is (the result is on stdout)."""
    print(line, file=sys.stderr, flush=True)


def _cli(env: dict[str, str], rates: list[float]) -> int:
    rate, n = cli_decode(env)
    rates.append(rate)
    return n


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        _child(sys.argv[2])
    else:
        main()
