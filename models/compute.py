"""The one thread that runs llama.cpp's computations in this process.

llama-cpp-python's wheel builds llama.cpp with OpenMP, and OpenMP gives every thread that
starts a parallel computation its own team of helper threads, kept until that thread ends.
Between two tokens the helpers spin, waiting for the next one, unless the process holds more
OpenMP threads than it has cores: then they go to sleep at once and each token waits for them
to wake up. Measured on 2 cores, decoding on a second thread of a process where another
thread had decoded before ran at 0.79-0.83 of the first thread's speed (with
``OMP_WAIT_POLICY=passive`` both ran at that lower speed).

Textual runs thread workers on a pool of threads, so a model load, a pack's prefix, a turn
and the next turn would each start on whichever thread is free, and after a few turns the
process holds several teams. Everything that evaluates tokens therefore runs here, on one
long-lived thread: :func:`run` a function there, or :func:`iterate` a generator there.

Code that consumes a generation token by token should itself :func:`run` here: then the
generation runs inline. From another thread, :func:`iterate` hands each item over through a
queue, which is correct but wakes the consuming thread for every token (a few per cent of
decode speed on 2 cores).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any, TypeVar

__all__ = ["iterate", "on_compute_thread", "run"]

T = TypeVar("T")

_jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = queue.SimpleQueue()
_thread: threading.Thread | None = None
_start_lock = threading.Lock()


def _serve() -> None:
    while True:
        fn, future = _jobs.get()
        if not future.set_running_or_notify_cancel():
            continue
        try:
            result = fn()
        except BaseException as exc:  # handed to the caller, whatever it is
            future.set_exception(exc)
        else:
            future.set_result(result)
        del fn, future  # drop references to the job before waiting for the next


def _compute_thread() -> threading.Thread:
    global _thread
    with _start_lock:
        if _thread is None:
            _thread = threading.Thread(target=_serve, name="bastion-compute", daemon=True)
            _thread.start()
        return _thread


def on_compute_thread() -> bool:
    """The calling thread is the compute thread."""
    return _thread is not None and threading.current_thread() is _thread


def _submit(fn: Callable[[], T]) -> Future[T]:
    future: Future[T] = Future()
    thread = _compute_thread()
    _jobs.put((fn, future))
    assert thread.is_alive()
    return future


def run(fn: Callable[..., T], /, *args: Any, cancel: threading.Event | None = None) -> T:
    """``fn(*args)`` on the compute thread (inline when called there); its result or its
    exception. Jobs run one at a time, in the order they were submitted.

    If the wait is interrupted (Ctrl-C in the main thread), ``cancel`` is set and the job
    is waited for (it should stop soon: a generation checks ``cancel`` at every token and,
    while reading the prompt, in llama.cpp's abort callback); then the interrupt goes on.
    """
    if on_compute_thread():
        return fn(*args)
    future = _submit(lambda: fn(*args))
    try:
        return future.result()
    except BaseException:
        if future.done():
            raise
        if cancel is not None:
            cancel.set()
        while True:
            try:
                future.exception()  # wait, without raising the job's own error
                break
            except KeyboardInterrupt:
                continue  # a second Ctrl-C: the job was told to stop; wait for it
        raise


_ITEM, _END, _ERROR = range(3)


def iterate(items: Iterator[T]) -> Iterator[T]:
    """The items of ``items``, a generator that calls llama.cpp, produced on the compute
    thread. Inline when consumed there; from another thread, each item is handed over.

    Closing the returned iterator early stops ``items`` after its current item and waits
    until it has finished (its ``finally`` blocks have run, e.g. the engine's lock released).
    """
    if on_compute_thread():
        yield from items
        return
    out: queue.SimpleQueue[tuple[int, Any]] = queue.SimpleQueue()
    stop = threading.Event()

    def produce() -> None:
        try:
            if stop.is_set():  # closed before it started
                return
            for item in items:
                out.put((_ITEM, item))
                if stop.is_set():
                    break
        except BaseException as exc:
            out.put((_ERROR, exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()
            out.put((_END, None))

    future = _submit(produce)
    try:
        while True:
            kind, value = out.get()
            if kind == _ITEM:
                yield value
            elif kind == _ERROR:
                raise value
            else:
                return
    finally:
        stop.set()
        future.exception()  # wait until the generator has finished
