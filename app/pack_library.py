"""The vault's pack library: built-ins installed, imports planned and applied under the trust
and upgrade rules, signing keys trusted."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bastion.app import audit, packs
from bastion.app.packs import Pack, Trust
from bastion.storage.schema import PackRecord, SourceChunk
from bastion.storage.store import NotFoundError, Store

TRUSTED_KEYS = "trusted_pack_keys"


def trusted_keys(store: Store) -> dict[str, str]:
    """Public keys the user trusts to sign packs, with the name given for each."""
    value = store.get_setting(TRUSTED_KEYS, {})
    return dict(value) if isinstance(value, dict) else {}


def trust_key(store: Store, public_key: str, name: str) -> None:
    """Trust ``public_key`` (``ed25519:...``) as ``name`` for pack signatures.

    Raises:
        PackError: not an Ed25519 public key.
    """
    packs.parse_public_key(public_key)
    keys = trusted_keys(store)
    keys[public_key.strip()] = name
    store.set_setting(TRUSTED_KEYS, keys)
    audit.record(store, "pack.trust", key=audit.fingerprint(public_key))


def untrust_key(store: Store, public_key: str) -> None:
    keys = trusted_keys(store)
    if keys.pop(public_key.strip(), None) is None:
        raise NotFoundError("that key is not trusted")
    store.set_setting(TRUSTED_KEYS, keys)
    audit.record(store, "pack.untrust", key=audit.fingerprint(public_key))


def source_chunks(pack: Pack) -> list[SourceChunk]:
    return [
        SourceChunk(
            pack_id=pack.id, ref_id=c.ref_id, n=c.n, title=c.title, source=c.source, text=c.text
        )
        for c in packs.chunks(pack)
    ]


def save(store: Store, pack: Pack, signer: str | None) -> None:
    """Store ``pack`` (as one self-contained TOML) with its indexed reference chunks."""
    store.save_pack(pack.id, pack.version, pack.name, pack.to_toml(), signer, source_chunks(pack))


def _is_shipped(record: PackRecord) -> bool:
    """Whether a stored pack is exactly the built-in this version of Bastion ships."""
    return (
        record.signer == packs.BUILTIN_SIGNER
        and record.id in packs.builtin_ids()
        and record.source == packs.builtin_toml(record.id)
    )


def _verified_replacement(store: Store, record: PackRecord) -> bool:
    """Whether a stored pack under a built-in's id is signed by a key the user trusts."""
    try:
        pack = packs.parse(record.source, name=f"pack {record.id}")
        trust, _ = packs.verify(pack, trusted_keys(store))
    except packs.PackError:
        return False
    return trust is Trust.VERIFIED


def install_builtins(store: Store) -> list[str]:
    """Install or repair the built-in packs (run at every start).

    A built-in that is missing, older, or whose stored copy differs from the one shipped is
    written again; so is any pack under a built-in's id that is not signed by a key the user
    trusts (an import from an older version could replace one silently). Returns the ids
    written.
    """
    installed = {r.id: r for r in store.list_packs()}
    done = []
    for pack_id in packs.builtin_ids():
        current = installed.get(pack_id)
        if current is not None and _is_shipped(current):
            continue
        if (
            current is not None
            and current.signer != packs.BUILTIN_SIGNER
            and _verified_replacement(store, current)
        ):
            continue
        save(store, packs.builtin(pack_id), packs.BUILTIN_SIGNER)
        done.append(pack_id)
    return done


@dataclass
class InstalledPack:
    """A pack in the vault and how far it is trusted."""

    record: PackRecord
    pack: Pack
    trust: Trust
    signer: str | None
    """Who vouches for it: the trusted key's name, or the unverified name of the signer."""

    @property
    def trust_text(self) -> str:
        if self.trust is Trust.VERIFIED:
            return f"verified: signed by {self.signer}"
        if self.trust is Trust.UNTRUSTED:
            return f"signed by a key you have not trusted (claims to be {self.signer})"
        return self.trust.value


def get(store: Store, pack_id: str) -> InstalledPack:
    """An installed pack, parsed and with its trust status.

    Raises:
        NotFoundError: no such pack.
        PackError: the stored copy no longer validates or its signature does not match.
    """
    record = store.get_pack(pack_id)
    if _is_shipped(record):
        return InstalledPack(record, packs.builtin(pack_id), Trust.BUILTIN, None)
    pack = packs.parse(record.source, name=f"pack {pack_id}")
    trust, signer = packs.verify(pack, trusted_keys(store))
    return InstalledPack(record, pack, trust, signer)


def installed(store: Store) -> list[InstalledPack]:
    return [get(store, r.id) for r in store.list_packs()]


@dataclass
class ImportPlan:
    """What importing a pack file would do; ``apply_import`` carries it out."""

    pack: Pack
    trust: Trust
    signer: str | None
    action: Literal["install", "upgrade", "same", "downgrade"]
    current_version: str | None = None

    replaces_builtin: bool = False
    """The pack takes a built-in pack's id (allowed only when signed by a trusted key)."""

    @property
    def needs_confirmation(self) -> bool:
        """Replacing a built-in pack, or an installed pack with an older or equal version,
        asks first."""
        return self.replaces_builtin or self.action in ("same", "downgrade")

    def describe(self) -> str:
        what = {
            "install": "new pack",
            "upgrade": f"upgrade from {self.current_version}",
            "same": f"version {self.current_version} is already installed",
            "downgrade": f"older than the installed {self.current_version}",
        }[self.action]
        trust = {
            Trust.VERIFIED: f"verified: signed by {self.signer}",
            Trust.UNTRUSTED: f"signed by an untrusted key (claims to be {self.signer})",
            Trust.UNSIGNED: "unsigned",
            Trust.BUILTIN: "built-in",
        }[self.trust]
        builtin = "; REPLACES THE BUILT-IN PACK" if self.replaces_builtin else ""
        return f"{self.pack.id} {self.pack.version} ({self.pack.name}): {what}; {trust}{builtin}"


def plan_import(store: Store, pack: Pack) -> ImportPlan:
    """Check a loaded pack against the vault: signature, then version.

    Raises:
        SignatureMismatchError: the pack is signed and the signature does not match.
        PackError: the pack takes a built-in pack's id and is not signed by a trusted key.
    """
    trust, signer = packs.verify(pack, trusted_keys(store))
    replaces_builtin = pack.id in packs.builtin_ids()
    if replaces_builtin and trust is not Trust.VERIFIED:
        raise packs.PackError(
            [
                f"pack {pack.id!r} has the id of a built-in pack: only a pack signed by a key "
                "you trust (`bastion packs trust`) can replace it"
            ]
        )
    try:
        current = store.get_pack(pack.id)
    except NotFoundError:
        return ImportPlan(pack, trust, signer, "install", replaces_builtin=replaces_builtin)
    old = packs.version_key(current.version)
    action: Literal["upgrade", "same", "downgrade"] = (
        "upgrade" if pack.version_key > old else "same" if pack.version_key == old else "downgrade"
    )
    return ImportPlan(
        pack, trust, signer, action, current.version, replaces_builtin=replaces_builtin
    )


def apply_import(store: Store, plan: ImportPlan) -> None:
    signer = plan.signer if plan.trust is Trust.VERIFIED else None
    save(store, plan.pack, signer)
    audit.record(
        store,
        "pack.import",
        pack=plan.pack.id[:200],
        version=plan.pack.version[:200],
        trust=plan.trust.value,
        action=plan.action,
    )


def remove(store: Store, pack_id: str) -> None:
    """Remove an installed pack (and its indexed references).

    Raises:
        NotFoundError: no such pack.
    """
    record = store.get_pack(pack_id)
    store.remove_pack(pack_id)
    audit.record(store, "pack.remove", pack=pack_id[:200], version=record.version[:200])
