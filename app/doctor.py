"""`bastion doctor`: check the vault, the files, the guard, the models and the machine."""

from __future__ import annotations

import shutil
import stat
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from bastion.app import audit, model_choice, offline, paths
from bastion.models.engine import backend_info
from bastion.storage import crypto
from bastion.storage.vault import (
    VAULT_FILES,
    RollbackError,
    Vault,
    VaultError,
    file_mode_problems,
)

OK, WARN, FAIL = "OK", "WARN", "FAIL"


@dataclass
class Check:
    """One line of the report."""

    name: str
    status: str
    detail: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def check_files(data: Path) -> list[Check]:
    """Folder and file permissions, and anything in the data folder Bastion did not put there."""
    checks = []
    if not data.exists():
        return [Check("data folder", WARN, f"{data} does not exist yet (run `bastion init`)")]
    problems = []
    if _mode(data) & 0o077:
        problems.append(f"{data} is accessible by other users (want 0700)")
    for name in paths.vault_names():
        problems += file_mode_problems(paths.vault_dir(name))
    checks.append(
        Check("permissions", FAIL if problems else OK, "; ".join(problems) or "0700 / 0600")
    )
    stray = []
    for path in sorted(data.rglob("*")):
        rel = path.relative_to(data)
        if rel.parts[0] == "models":
            continue  # the user's own GGUF files
        if rel in (Path("vault"), Path("vaults")) or (
            rel.parts[:1] == ("vaults",) and len(rel.parts) == 2 and path.is_dir()
        ):
            continue
        if rel.parts[0] == "vault" and len(rel.parts) == 2 and rel.name in VAULT_FILES:
            continue
        if rel.parts[0] == "vaults" and len(rel.parts) == 3 and rel.name in VAULT_FILES:
            continue
        stray.append(str(rel))
    checks.append(
        Check(
            "unexpected files",
            FAIL if stray else OK,
            ("not made by Bastion: " + ", ".join(stray[:5])) if stray else "none",
        )
    )
    return checks


def check_vault(vault: Vault) -> list[Check]:
    checks = []
    integrity = vault.integrity_problems()
    checks.append(
        Check(
            "database integrity",
            FAIL if integrity else OK,
            "; ".join(integrity[:3]) or "integrity_check and cipher_integrity_check pass",
        )
    )
    pragmas = vault.pragma_problems()
    checks.append(
        Check(
            "pragmas",
            FAIL if pragmas else OK,
            "; ".join(pragmas)
            or "secure_delete, temp_store=MEMORY, WAL, synchronous=FULL, FTS secure-delete",
        )
    )
    checks.append(Check("rollback", OK, "the database and its header agree"))
    checks.append(
        Check("recovery key", OK, "set (a second way in, kept by you)")
        if vault.has_recovery_key
        else Check("recovery key", WARN, "none: make one with `bastion recovery-key --rotate`")
    )
    report = audit.verify(vault.store)
    checks.append(
        Check("audit log", OK, f"{report.rows} event(s), chain intact")
        if report.intact
        else Check("audit log", FAIL, f"altered at row {report.first_bad}: {report.reason}")
    )
    return checks


def check_models(vault: Vault | None) -> list[Check]:
    found = model_choice.find_models()
    usable = [m for m in found if m.usable]
    checks = [
        Check(
            "models",
            OK if usable else FAIL,
            f"{len(usable)} usable of {len(found)} found" if found else "no model found",
        )
    ]
    if vault is None:
        return checks
    recorded = {
        (c.model_name, c.model_sha256)
        for c in vault.store.list_conversations()
        if c.model_name and c.model_sha256
    }
    by_name = {m.name: m for m in usable}
    changed = []
    for name, sha in sorted(recorded):
        info = by_name.get(name)
        if info is not None and model_choice.model_sha256(info) != sha:
            changed.append(name)
    checks.append(
        Check(
            "model hashes",
            FAIL if changed else OK,
            ("changed since conversations used them: " + ", ".join(changed))
            if changed
            else f"{len(recorded)} recorded model(s) match or are absent",
        )
    )
    return checks


def check_guard() -> Check:
    if not offline.installed():
        return Check("offline guard", FAIL, "not installed in this process")
    n = offline.blocked_count()
    return Check(
        "offline guard",
        WARN if n else OK,
        f"active, {n} attempt(s) blocked" + (f" (last: {offline.last_blocked()})" if n else ""),
    )


def check_llama() -> list[Check]:
    """The llama.cpp library, and the CPU backend ggml chose for this CPU."""
    try:
        info = backend_info()
    except Exception as exc:  # a broken build is exactly what doctor should report
        return [Check("llama.cpp", FAIL, f"cannot load: {exc}")]
    where = "bundled with this executable" if getattr(sys, "frozen", False) else "installed"
    features = ", ".join(info.cpu_features) or info.system_info or "none reported"
    checks = [
        Check(
            "llama.cpp",
            OK,
            f"llama-cpp-python {info.version} ({where}: {info.library}); CPU: {features}",
        )
    ]
    if info.cpu_backends and info.cpu_backend == "built-in":
        # dynamic backends present but none loaded: no CPU variant runs on this CPU
        checks.append(
            Check(
                "cpu backend",
                FAIL,
                f"none of the {len(info.cpu_backends)} CPU backends loaded "
                f"({', '.join(info.cpu_backends)})",
            )
        )
    else:
        choice = (
            f"chosen for this CPU from {len(info.cpu_backends)}: {', '.join(info.cpu_backends)}"
            if info.cpu_backends
            else "linked into llama.cpp"
        )
        checks.append(
            Check("cpu backend", OK, f"{info.cpu_backend} ({choice}); CPU features: {features}")
        )
    return checks


def check_llama_log() -> Check:
    """Load the default model once (smallest context) and count llama.cpp's log warnings;
    the lines themselves go through Bastion's logging, never straight to the terminal."""
    from bastion.models import engine as engine_mod
    from bastion.models.discovery import NoModelError
    from bastion.models.settings import LoadSettings

    before = dict(engine_mod.log_counts)
    try:
        info = model_choice.pick_model()
        engine_mod.Engine(info.path, LoadSettings(n_ctx=256)).close()
    except (NoModelError, engine_mod.EngineError) as exc:
        return Check("llama.cpp log", WARN, f"no model loaded: {exc}")
    warnings = engine_mod.log_counts["warning"] - before.get("warning", 0)
    errors = engine_mod.log_counts["error"] - before.get("error", 0)
    detail = f"{warnings} warning(s), {errors} error(s) loading {info.name}"
    if warnings or errors:
        detail += " (see them with BASTION_LLAMA_LOG=warning)"
    return Check("llama.cpp log", WARN if errors else OK, detail)


def check_disk(data: Path) -> Check:
    where = data if data.exists() else data.parent
    while not where.exists():
        where = where.parent
    free = shutil.disk_usage(where).free
    status = FAIL if free < 100e6 else WARN if free < 1e9 else OK
    return Check("free disk", status, f"{free / 1e9:.1f} GB free in {where}")


def run(passphrase: bytearray | None) -> list[Check]:
    """Every check. With a passphrase the vault is unlocked for its own checks."""
    data = paths.data_dir()
    checks = [check_guard()]
    vault = None
    folder = paths.vault_dir()
    exists = paths.vault_exists(folder)
    if exists and passphrase is not None:
        try:
            # Never accept a rollback here: doctor reports it (FAIL) and changes nothing;
            # accepting one is the user's explicit choice at unlock (--accept-rollback).
            vault = Vault.open(folder, passphrase)
            checks.append(Check("vault header", OK, "unlocked; every header byte authenticated"))
        except crypto.UnlockError as exc:
            checks.append(Check("vault header", FAIL, str(exc)))
        except RollbackError as exc:
            checks.append(Check("vault header", OK, "every header byte authenticated"))
            checks.append(Check("rollback", FAIL, f"{exc}; nothing was changed"))
        except VaultError as exc:
            checks.append(Check("vault", FAIL, str(exc)))
        finally:
            crypto.wipe(passphrase)
    elif not exists:
        checks.append(Check("vault", WARN, "no vault yet (run `bastion init`)"))
    try:
        if vault is not None:
            checks += check_vault(vault)
        checks += check_files(data)
        checks += check_models(vault)
        checks += check_llama()
        checks.append(check_llama_log())
        checks.append(check_disk(data))
    finally:
        if vault is not None:
            vault.close()
    return checks
