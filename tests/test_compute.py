"""llama.cpp's work runs on one thread of the process (``bastion.models.compute``): with
OpenMP, every thread that evaluates tokens gets a team of helper threads, and once the
teams outnumber the cores, decoding slows by a fifth."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.models import compute
from bastion.models.engine import ChatMessage, Engine
from bastion.models.settings import LoadSettings, SamplingSettings
from tests.conftest import bastion_cmd, cli_env

GREEDY = SamplingSettings(temperature=0.0, max_tokens=8, seed=7)


def user(text: str) -> ChatMessage:
    return ChatMessage(role="user", content=text)


def test_every_evaluation_runs_on_one_thread(
    engine: Engine, model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Loading, answering (from the test's thread and from another), prefilling, a saved
    prefix and scoring all evaluate tokens on the same thread, which is none of the callers'."""
    import llama_cpp

    threads: set[int] = set()
    real_eval = engine.llama.eval

    def eval_(tokens: object) -> None:
        threads.add(threading.get_ident())
        real_eval(tokens)  # type: ignore[arg-type]

    monkeypatch.setattr(engine.llama, "eval", eval_)
    engine.clear_cache()
    assert engine.chat([user("Name a colour.")], GREEDY).text()
    other = threading.Thread(target=lambda: engine.chat([user("Name a city.")], GREEDY).text())
    other.start()
    other.join()
    assert engine.prefill([user("Name a river.")]) > 0
    engine.remember_prefix([ChatMessage(role="system", content="You answer in one word.")])
    assert len(engine.option_logprobs([user("Yes or no?")], ["yes", "no"])) == 2
    callers = {threading.get_ident(), other.ident}
    assert len(threads) == 1 and not threads & callers, (threads, callers)

    loaded_on: list[int] = []

    class Recording(llama_cpp.Llama):  # type: ignore[misc]
        def __init__(self, *args: object, **kwargs: object) -> None:
            loaded_on.append(threading.get_ident())
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(llama_cpp, "Llama", Recording)
    Engine(model_path).close()
    assert loaded_on == list(threads)


def _numbers(n: int, log: list[str], pace: float = 0.0) -> Iterator[int]:
    try:
        for i in range(n):
            time.sleep(pace)
            log.append(f"made {i} on {threading.current_thread().name}")
            yield i
    finally:
        log.append("closed")


def test_iterate_from_another_thread_hands_items_over() -> None:
    log: list[str] = []
    assert list(compute.iterate(_numbers(3, log))) == [0, 1, 2]
    assert log == [f"made {i} on bastion-compute" for i in range(3)] + ["closed"]


def test_iterate_on_the_compute_thread_runs_inline() -> None:
    log: list[str] = []

    def consume() -> list[tuple[int, str]]:
        return [(i, threading.current_thread().name) for i in compute.iterate(_numbers(2, log))]

    assert compute.run(consume) == [(0, "bastion-compute"), (1, "bastion-compute")]
    assert compute.run(lambda: compute.run(lambda: 7)) == 7  # nested: no deadlock


def test_closing_early_waits_for_the_generator_to_finish() -> None:
    """An abandoned generation stops after its current item, and its ``finally`` (the
    engine's lock released) has run when ``close()`` returns."""
    log: list[str] = []
    items = compute.iterate(_numbers(1000, log, pace=0.01))  # 10 s if not stopped
    assert next(items) == 0
    items.close()  # type: ignore[attr-defined]
    assert log[-1] == "closed" and len(log) < 100


def test_errors_reach_the_caller() -> None:
    def failing() -> Iterator[int]:
        yield 1
        raise ValueError("bad token")

    items = compute.iterate(failing())
    assert next(items) == 1
    with pytest.raises(ValueError, match="bad token"):
        next(items)
    with pytest.raises(ZeroDivisionError):
        compute.run(lambda: 1 / 0)


def test_an_interrupted_wait_cancels_the_job_and_waits_for_it() -> None:
    """Ctrl-C while the main thread waits for the compute thread: the job is told to stop
    (its cancel event set) and has finished before the interrupt goes on."""
    cancel = threading.Event()
    finished: list[bool] = []

    def job() -> None:
        cancel.wait(30)
        time.sleep(0.2)  # stopping takes a moment
        finished.append(cancel.is_set())

    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        compute.run(job, cancel=cancel)
    assert finished == [True]


def test_ctrl_c_in_ask_stops_the_answer(tmp_path: Path) -> None:
    """`bastion ask` interrupted while the model writes: the answer so far is printed, the
    statistics say it was cut short, and the command ends cleanly."""
    proc = subprocess.Popen(
        [
            *bastion_cmd(),
            "ask",
            "Write a long, detailed story about a lighthouse keeper and a storm.",
            "--temperature",
            "0",
            "--max-tokens",
            "2000",
            "--stats",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli_env(tmp_path),
    )
    assert proc.stdout is not None
    first = proc.stdout.read(40)  # the model is writing
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    text = (first + out).decode()
    assert proc.returncode == 0, err.decode()[-500:]
    assert "Traceback" not in err.decode()
    m = re.search(r"(\d+) generated", err.decode())
    assert m, err.decode()
    assert 0 < int(m.group(1)) < 2000 and "stop: cancelled" in err.decode()
    assert len(text) > 40


def test_a_question_sent_while_the_model_loads_does_not_deadlock(model_path: Path) -> None:
    """The load worker looks the engine up while an answer on the compute thread needs it
    too (a question sent while the model loads): both get the one engine. Before, the worker
    held the engines' lock while it waited for the compute thread, which waited for the lock."""
    from bastion.app import model_choice
    from bastion.models.discovery import ModelSource, describe

    info = describe(model_path, ModelSource.EXPLICIT)
    load = LoadSettings(n_ctx=512)  # not the engine other tests share
    engines: list[Engine] = []

    def answer() -> None:
        time.sleep(0.5)  # the load worker starts meanwhile
        engines.append(model_choice.load_engine(info, load))

    answering = threading.Thread(target=compute.run, args=(answer,), daemon=True)
    answering.start()
    loading = threading.Thread(
        target=lambda: engines.append(model_choice.load_engine(info, load)), daemon=True
    )
    loading.start()
    answering.join(60)
    loading.join(60)
    assert not answering.is_alive() and not loading.is_alive(), "deadlock"
    assert len(engines) == 2 and engines[0] is engines[1]
    model_choice.close_engines()


def test_a_prefill_that_waited_for_an_answer_is_skipped(engine: Engine) -> None:
    """A draft's prefill asked for while a turn was being prepared on the compute thread
    (before the answer took the engine) is not evaluated after the answer: it is stale."""
    engine.clear_cache()
    started = threading.Event()

    def turn() -> None:
        started.set()
        time.sleep(0.5)  # e.g. a pack's prefix restored before the answer starts
        engine.chat([user("Name a colour.")], GREEDY).text()

    answering = threading.Thread(target=compute.run, args=(turn,))
    answering.start()
    started.wait()
    assert engine.prefill([user("Name a river and a lake and a mountain.")]) == 0
    answering.join()
    assert engine.prefill([user("Name a river and a lake and a mountain.")]) > 0  # idle: kept
