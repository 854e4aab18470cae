"""Choosing and loading a model: discovery, names and paths, one engine in memory at a time."""

from __future__ import annotations

import atexit
import threading
from pathlib import Path

from bastion.app import paths
from bastion.models import compute
from bastion.models.discovery import HashCache, ModelInfo, NoModelError, choose, discover
from bastion.models.engine import Engine
from bastion.models.settings import LoadSettings


def find_models(explicit: Path | None = None) -> list[ModelInfo]:
    """All models on this machine (explicit path, user folder, embedded, other tools)."""
    return discover(explicit, paths.models_dir())


def pick_model(model: str | None = None) -> ModelInfo:
    """A model by path or name, or the best available one.

    Raises:
        NoModelError: nothing usable matches.
    """
    if model is None:
        return choose(find_models())
    found = find_models()
    if any(m.name == model for m in found):
        return choose(found, model)  # a name `bastion models` shows (names may hold a `/`)
    path = Path(model).expanduser()
    if path.exists() or path.suffix.lower() == ".gguf" or "/" in model:
        if not path.exists():
            raise NoModelError(f"no model named {model!r} and no file {path}")
        return choose(find_models(path), str(path))
    return choose(found, model)


def model_sha256(info: ModelInfo) -> str:
    return info.sha256(HashCache(paths.cache_dir() / "model-hashes.json"))


_engines: dict[tuple[Path, str], Engine] = {}
_engines_lock = threading.Lock()


def close_engines() -> None:
    """Free every loaded model (at exit: llama-cpp-python's own finaliser fails then)."""
    with _engines_lock:
        for engine in _engines.values():
            engine.close()
        _engines.clear()


atexit.register(close_engines)


def forget_kv_state() -> None:
    """Clear the KV cache and saved prefixes of every loaded engine (lock, vault switch):
    nothing computed from one vault's content stays in memory; the weights stay loaded."""
    with _engines_lock:
        for engine in _engines.values():
            engine.clear_cache()


def load_engine(info: ModelInfo, load: LoadSettings | None = None) -> Engine:
    """The engine for ``info``, loaded once per process and load settings (blocking).

    Looked up and loaded on the compute thread (``bastion.models.compute``), where the model
    is loaded anyway: a thread holding the engines' lock while it waited for the compute
    thread would deadlock with an answer there that needs the engine (a question sent while
    the model loads)."""
    return compute.run(_load_engine, info, load or LoadSettings())


def _load_engine(info: ModelInfo, load: LoadSettings) -> Engine:
    key = (info.path.resolve(), load.model_dump_json())
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            # One model in memory at a time: a second llama.cpp instance would fight the
            # first for the same cores (two instances on 2 cores collapsed decode below 1 tok/s).
            for old in list(_engines.values()):
                old.close()
            _engines.clear()
            engine = Engine(info.path, load, chat_template=info.chat_template)
            _engines[key] = engine
        return engine
