"""The self-contained bundle built by `make bundle`, run as a user without Python would run it:
an empty environment (`env -i`-like: only HOME, PATH and TERM), a PATH with no Python on it,
no network. `make test` builds the bundle and runs these (marker `bundle`).

The bundle carries one llama.cpp CPU backend per instruction-set level; ggml picks the best for
the CPU at run time. These tests check the choice natively (against this machine's
/proc/cpuinfo), under `qemu-x86_64 -cpu Nehalem` (no AVX), that a backend planted in the
working folder, the documents or $GGML_BACKEND_PATH never loads, and the release archive
(size, checksums, sorted entries with fixed times, stripped binaries)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import tomllib
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.bundle

BUNDLE = Path(os.environ.get("BASTION_BUNDLE", ROOT / "dist" / "bastion"))
TOOLS = ("sh", "env", "cat", "ls", "sleep")
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
ARCHIVE = BUNDLE.parent / f"bastion-{VERSION}-linux-x86_64.tar.gz"
MAX_ARCHIVE_BYTES = 170 * 1000 * 1000

# ggml's x86 CPU variants (ggml/src/CMakeLists.txt) with the /proc/cpuinfo flags each needs,
# and the score ggml gives each feature (ggml-cpu/arch/x86/cpu-feats.cpp): the best variant
# is the one with every flag present and the highest score. AVX-512 means F, CD, VL, DQ, BW.
# No sapphirerapids (AMX): the build leaves it out (packaging/llama-cpp-python.patch).
AVX512 = ("avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw")
HASWELL = ("sse4_2", "avx", "f16c", "fma", "avx2", "bmi2")
VARIANTS: dict[str, tuple[str, ...]] = {
    "x64": (),
    "sse42": ("sse4_2",),
    "sandybridge": ("sse4_2", "avx"),
    "ivybridge": ("sse4_2", "avx", "f16c"),
    "piledriver": ("sse4_2", "avx", "f16c", "fma"),
    "haswell": HASWELL,
    "skylakex": (*HASWELL, *AVX512),
    "cannonlake": (*HASWELL, *AVX512, "avx512vbmi"),
    "cascadelake": (*HASWELL, *AVX512, "avx512_vnni"),
    "icelake": (*HASWELL, *AVX512, "avx512vbmi", "avx512_vnni"),
    "cooperlake": (*HASWELL, *AVX512, "avx512_vnni", "avx512_bf16"),
    "zen4": (*HASWELL, *AVX512, "avx512vbmi", "avx512_vnni", "avx512_bf16"),
    "alderlake": (*HASWELL, "avx_vnni"),
}
SCORES = {
    "fma": 1,
    "f16c": 2,
    "sse4_2": 4,
    "bmi2": 8,
    "avx": 16,
    "avx2": 32,
    "avx_vnni": 64,
    "avx512f": 128,
    "avx512vbmi": 256,
    "avx512_bf16": 512,
    "avx512_vnni": 1024,
}


def best_variant(flags: set[str], bundled: set[str]) -> str:
    """The bundled variant ggml must choose for a CPU with these /proc/cpuinfo flags."""
    usable = [name for name in bundled if set(VARIANTS[name]) <= flags]
    return max(usable, key=lambda name: sum(SCORES.get(f, 0) for f in VARIANTS[name]))


def bundled_variants(bundle: Path) -> set[str]:
    libs = bundle / "_internal" / "llama_cpp" / "lib"
    return {p.name.removeprefix("libggml-cpu-").split(".so")[0] for p in libs.glob("libggml-cpu-*")}


def cpu_flags() -> set[str]:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    raise AssertionError("no flags line in /proc/cpuinfo")


@pytest.fixture(scope="module")
def bundle() -> Path:
    assert (BUNDLE / "bastion").is_file(), f"no bundle in {BUNDLE}: run `make bundle`"
    return BUNDLE.resolve()


def manifest(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(folder)): (p.lstat().st_size, p.lstat().st_mtime_ns)
        for p in folder.rglob("*")
    }


def bare_path(tmp: Path) -> Path:
    """A PATH folder with a few basic tools and no Python."""
    folder = tmp / "bin"
    folder.mkdir(exist_ok=True)
    for tool in TOOLS:
        found = shutil.which(tool)
        assert found
        link = folder / tool
        if not link.exists():
            link.symlink_to(found)
    return folder


def env_for(tmp: Path, **extra: str) -> dict[str, str]:
    (tmp / "home").mkdir(exist_ok=True)
    return {
        "HOME": str(tmp / "home"),
        "PATH": str(bare_path(tmp)),
        "TERM": "xterm-256color",
        **extra,
    }


def run(
    bundle: Path,
    tmp: Path,
    *args: str,
    prefix: tuple[str, ...] = (),
    cwd: Path | None = None,
    timeout: float = 300,
    **extra: str,
) -> subprocess.CompletedProcess[str]:
    # unshare -n: no network at all, as on many of our users' machines.
    return subprocess.run(
        [shutil.which("unshare") or "unshare", "-n", *prefix, str(bundle / "bastion"), *args],
        env=env_for(tmp, **extra),
        cwd=cwd or tmp,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def doctor_checks(proc: subprocess.CompletedProcess[str]) -> dict[str, dict[str, str]]:
    checks = {c["name"]: c for c in json.loads(proc.stdout)}
    assert proc.returncode == 0, [c for c in checks.values() if c["status"] == "FAIL"]
    return checks


def cpu_backend(checks: dict[str, dict[str, str]]) -> str:
    """The variant `bastion doctor` names: `cpu backend: haswell (chosen ...)`."""
    assert checks["cpu backend"]["status"] == "OK", checks["cpu backend"]
    return checks["cpu backend"]["detail"].split()[0]


def ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, proc.stderr
    return proc


def test_bundle_commands_without_python(bundle: Path, tmp_path: Path) -> None:
    before = manifest(bundle)
    path = str(bare_path(tmp_path))
    assert shutil.which("python3", path=path) is None and shutil.which("python", path=path) is None

    assert ok(run(bundle, tmp_path, "--version")).stdout.startswith("bastion ")
    models = json.loads(ok(run(bundle, tmp_path, "models", "--json")).stdout)
    embedded = [m for m in models if m["source"] == "embedded"]
    assert embedded and embedded[0]["usable"], models
    assert Path(embedded[0]["path"]).is_relative_to(bundle)

    pw = {"BASTION_PASSPHRASE": "bundle test passphrase"}
    ok(run(bundle, tmp_path, "init", "--kdf-memory-mib", "8", "--kdf-passes", "1", **pw))
    answer = ok(
        run(
            bundle,
            tmp_path,
            "ask",
            "--save",
            "--max-tokens",
            "12",
            "--temperature",
            "0",
            "--stats",
            "What is the capital of France?",
            **pw,
        )
    )
    assert answer.stdout.strip() and "[stats]" in answer.stderr
    red = ok(run(bundle, tmp_path, "ask", "--pack", "medical", "I want to kill myself", **pw))
    assert "988" in red.stdout  # the pack's fixed response, from the bundled pack files

    doctor = run(bundle, tmp_path, "doctor", "--json", **pw)
    checks = {c["name"]: c for c in json.loads(doctor.stdout)}
    assert doctor.returncode == 0, [c for c in checks.values() if c["status"] == "FAIL"]
    assert "bundled with this executable" in checks["llama.cpp"]["detail"]
    assert str(bundle) in checks["llama.cpp"]["detail"]
    assert checks["offline guard"]["status"] == "OK"

    # Nothing was written next to the executable or in the working folder; the data is in
    # the user's data folder.
    assert manifest(bundle) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bin", "home"]
    assert (tmp_path / "home" / ".local" / "share" / "bastion" / "vault" / "vault.db").is_file()


def test_bundle_starts_the_app_in_tmux(bundle: Path, tmp_path: Path) -> None:
    """The TUI starts and shows the first-run screen; the time it takes is printed."""
    assert shutil.which("tmux"), "tmux is installed by `make test`"
    session = f"bastion-bundle-{os.getpid()}"
    env = env_for(tmp_path)
    command = " ".join(
        [
            f"env -i HOME={env['HOME']} PATH={env['PATH']} TERM=xterm-256color",
            str(bundle / "bastion"),
        ]
    )
    start = time.monotonic()
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", session, "-x", "120", "-y", "40", command], check=True
    )
    try:
        screen = ""
        while time.monotonic() - start < 60:
            screen = subprocess.run(
                ["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True
            ).stdout
            if "Create your vault" in screen:
                break
            time.sleep(0.05)
        elapsed = time.monotonic() - start
        assert "Create your vault" in screen, screen
        print(f"\nbundle cold start to the first-run screen: {elapsed:.2f} s")
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)


def test_desktop_entry_installs_for_the_user(bundle: Path, tmp_path: Path) -> None:
    """The bundle's install script writes a desktop entry that runs this bundle in a terminal."""
    import configparser

    home = tmp_path / "home"
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin"}
    script = bundle / "install-desktop-entry.sh"
    proc = subprocess.run([str(script)], env=env, capture_output=True, text=True, check=True)
    entry = home / ".local" / "share" / "applications" / "bastion.desktop"
    assert str(entry) in proc.stdout
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(entry)
    desktop = parser["Desktop Entry"]
    assert desktop["Exec"] == f'"{bundle / "bastion"}"'
    assert desktop["Terminal"] == "true" and desktop["Icon"] == "bastion"
    assert (home / ".local/share/icons/hicolor/scalable/apps/bastion.svg").is_file()
    subprocess.run([str(script), "--uninstall"], env=env, check=True, capture_output=True)
    assert not entry.exists()


def test_bundle_carries_cpu_backends_from_baseline_up_but_no_amx(bundle: Path) -> None:
    """CPU backends from any x86-64 up to AVX-512 are bundled next to libggml (the Makefile's
    LLAMA_CPU_VARIANTS); no AMX one; the CPU backend is not linked into libggml."""
    found = bundled_variants(bundle)
    assert found <= set(VARIANTS), found
    assert {"x64", "sse42", "sandybridge", "haswell", "skylakex", "icelake"} <= found
    assert not list(bundle.rglob("*sapphirerapids*")) and not list(bundle.rglob("*amx*"))
    assert not (bundle / "_internal" / "llama_cpp" / "lib" / "libggml-cpu.so").exists()


def test_bundle_picks_the_best_cpu_backend_natively(bundle: Path, tmp_path: Path) -> None:
    """Natively, ggml loads the variant this CPU's flags call for (an AVX2 one or better on
    every machine we run on), from inside the bundle, and the bundle answers with it."""
    flags = cpu_flags()
    expected = best_variant(flags, bundled_variants(bundle))
    assert "avx2" in flags and "avx2" in VARIANTS[expected]  # every machine we run on
    checks = doctor_checks(run(bundle, tmp_path, "doctor", "--json"))
    assert cpu_backend(checks) == expected, checks["cpu backend"]
    assert "AVX2" in checks["cpu backend"]["detail"]
    answer = ok(run(bundle, tmp_path, "ask", "--max-tokens", "4", "--temperature", "0", "Hi"))
    assert answer.stdout.strip()


def test_bundle_on_a_cpu_without_avx(bundle: Path, tmp_path: Path) -> None:
    """Under qemu's Nehalem model (SSE4.2, no AVX in CPUID) the bundle picks the sse42 backend
    and answers. qemu still executes AVX: this proves the choice, not the absence of SIGILL."""
    qemu = shutil.which("qemu-x86_64")
    assert qemu, "qemu-user is installed by the Makefile's set-up"
    emulated = (qemu, "-cpu", "Nehalem")
    # PyInstaller's bootloader re-executes itself once (execve), and qemu-user does not follow
    # an execve: the second process would run natively. These variables tell the bootloader
    # it already is that second process, so everything runs under the emulated CPU.
    child = {
        "_PYI_PARENT_PROCESS_LEVEL": "1",
        "_PYI_APPLICATION_HOME_DIR": str(bundle / "_internal"),
        "_PYI_ARCHIVE_FILE": str(bundle / "bastion"),
    }
    checks = doctor_checks(
        run(bundle, tmp_path, "doctor", "--json", prefix=emulated, timeout=900, **child)
    )
    nehalem = {"sse4_2"}  # of the flags in VARIANTS: SSE4.2, no AVX
    assert cpu_backend(checks) == best_variant(nehalem, bundled_variants(bundle)) == "sse42"
    assert "AVX" not in checks["cpu backend"]["detail"].split(";")[1].replace(",", " ").split()
    start = time.monotonic()
    question = ("ask", "--max-tokens", "3", "--temperature", "0", "Hi")
    answer = run(bundle, tmp_path, *question, prefix=emulated, timeout=900, **child)
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.strip()
    print(f"\nemulated Nehalem: 3 tokens answered in {time.monotonic() - start:.0f} s")


PLANTED = r"""
#include <stdio.h>
__attribute__((constructor)) static void planted(void) {
    FILE *f = fopen(MARKER, "a");
    if (f) { fputs("planted backend loaded\n", f); fclose(f); }
}
int ggml_backend_score(void) { return 1 << 30; }
void *ggml_backend_init(void) { return 0; }
"""


def test_planted_backend_is_never_loaded(bundle: Path, tmp_path: Path) -> None:
    """A libggml-cpu-*.so (or libggml-cpu.so) in the working folder or the user's documents, or
    named by $GGML_BACKEND_PATH, is never loaded: its code would run inside Bastion. The planted
    library scores higher than any real backend and records being loaded."""
    marker = tmp_path / "planted-was-loaded"
    source = tmp_path / "planted.c"
    source.write_text(PLANTED)
    lib = tmp_path / "planted.so"
    cc = shutil.which("cc") or shutil.which("gcc")
    assert cc, "a C compiler (needed to build llama.cpp) is installed"
    subprocess.run(
        [cc, "-shared", "-fPIC", f'-DMARKER="{marker}"', "-o", str(lib), str(source)], check=True
    )
    work = tmp_path / "home" / "Documents"
    work.mkdir(parents=True)
    for folder in (tmp_path, work):
        for name in ("libggml-cpu-planted.so", "libggml-cpu.so", "libggml-blas-planted.so"):
            shutil.copy(lib, folder / name)
    planted = {"GGML_BACKEND_PATH": str(work / "libggml-cpu-planted.so")}
    checks = doctor_checks(run(bundle, tmp_path, "doctor", "--json", cwd=work, **planted))
    assert cpu_backend(checks) == best_variant(cpu_flags(), bundled_variants(bundle))
    answer = ok(run(bundle, tmp_path, "ask", "--max-tokens", "3", "Hi", cwd=work, **planted))
    assert answer.stdout.strip()
    assert not marker.exists(), "a planted backend library was loaded"
    # the planted library does load when asked to (so the test can fail)
    probe = subprocess.run(
        [sys.executable, "-c", f"import ctypes; ctypes.CDLL({str(lib)!r})"], capture_output=True
    )
    assert probe.returncode == 0 and marker.exists()


def test_release_archive(bundle: Path) -> None:
    """The archive: at most 170 MB, its SHA-256 in SHA256SUMS beside it, entries sorted by name
    with one fixed time and owner 0 (reproducible), and every binary stripped."""
    assert ARCHIVE.is_file(), f"no archive {ARCHIVE}: run `make bundle`"
    assert ARCHIVE.stat().st_size <= MAX_ARCHIVE_BYTES, ARCHIVE.stat().st_size
    sums = (ARCHIVE.parent / "SHA256SUMS").read_text().split()
    assert sums == [hashlib.sha256(ARCHIVE.read_bytes()).hexdigest(), ARCHIVE.name]
    with tarfile.open(ARCHIVE) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names[0] == "bastion" and len(set(names)) == len(names)
    siblings: dict[str, list[str]] = {}
    for name in names:  # tar --sort=name: each folder's entries in name order
        siblings.setdefault(os.path.dirname(name), []).append(os.path.basename(name))
    assert all(group == sorted(group) for group in siblings.values())
    assert len({m.mtime for m in members}) == 1
    assert {(m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, "", "")}
    # Not the libraries auditwheel vendored into `*.libs/` folders (numpy's OpenBLAS): strip
    # breaks their patchelf-rewritten layout; they are shipped as their projects built them.
    elves = [
        p
        for p in bundle.rglob("*")
        if p.is_file()
        and not p.is_symlink()
        and not p.parent.name.endswith(".libs")
        and p.open("rb").read(4) == b"\x7fELF"
    ]
    assert any(p.name.startswith("libggml-cpu-") for p in elves)
    readelf = shutil.which("readelf")
    assert readelf, "binutils (needed to build llama.cpp) is installed"
    unstripped = []
    for path in elves:
        sections = subprocess.run(
            [readelf, "-S", "-W", str(path)], capture_output=True, text=True, check=True
        ).stdout
        if " .symtab " in sections or " .debug_" in sections:
            unstripped.append(str(path.relative_to(bundle)))
    assert not unstripped, unstripped
