"""The chat session behind the app and ``bastion ask``: vault, current conversation,
branches, the engine, and the turn pipeline's order (:mod:`bastion.app.turn`).

Every method may block (disk, KDF, model): the UI calls them from thread workers.
Incognito conversations live only in this object's memory and are never written.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bastion.app import audit, model_choice, pack_library, paths, transfer, turn
from bastion.app.documents import library as doc_library
from bastion.app.documents import summary as doc_summary
from bastion.app.pack_library import InstalledPack
from bastion.app.packs import Pack
from bastion.app.settings import AppSettings
from bastion.models.discovery import ModelInfo, NoModelError
from bastion.models.engine import (
    ChatMessage,
    Engine,
    Generation,
    PrefillProgress,
    StopReason,
    TurnStats,
)
from bastion.models.settings import SamplingSettings
from bastion.storage import crypto
from bastion.storage import export as export_fmt
from bastion.storage.crypto import KdfParams, UnlockError
from bastion.storage.schema import (
    Conversation,
    DocumentPage,
    DocumentRecord,
    KvState,
    Message,
    MessageMeta,
    SafetyNotice,
    SearchHit,
    SourceRef,
)
from bastion.storage.store import Store
from bastion.storage.vault import RollbackError, Vault, memory_store

__all__ = [
    "ChatSession",
    "KdfParams",
    "LockedError",
    "PackContextError",
    "PendingTurn",
    "RollbackError",
    "UnlockError",
]

INCOGNITO_ID = "incognito"
SETTINGS_KEY = "app"
TITLE_LENGTH = 60


class LockedError(RuntimeError):
    """The vault is locked: unlock it first."""


class PackContextError(Exception):
    """The model's context is smaller than the conversation's pack needs."""


def title_for(question: str) -> str:
    """A conversation title from its first question: first line, at most 60 characters."""
    line = " ".join(question.split())
    return line if len(line) <= TITLE_LENGTH else line[: TITLE_LENGTH - 1].rstrip() + "…"


@dataclass
class PendingTurn:
    """A turn ready to generate: the saved question, what the model sees, where the answer
    goes."""

    question: Message
    """The user message the answer replies to (with its safety notices and sources)."""
    messages: list[ChatMessage]
    generation: Generation | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    prefix_s: float = 0.0
    """Seconds spent computing the pack's prefix state before this turn (first use only)."""
    whole_documents: list[DocumentRecord] = field(default_factory=list)
    """For a whole-document question: the documents read in full (map-reduce when longer
    than the context) before the answer is generated."""
    progress: Callable[[int, int], None] | None = None
    """Told (done, total) as the parts of a long document are summarised."""

    @property
    def parent_id(self) -> str:
        return self.question.id

    @property
    def response(self) -> str | None:
        """A pack safety rule's fixed answer: the model is not asked."""
        return turn.fixed_response(self.question.meta.safety)

    @property
    def notices(self) -> list[SafetyNotice]:
        """Safety rules that fired on the user's message."""
        return list(self.question.meta.safety)

    @property
    def sources(self) -> list[SourceRef]:
        """Reference passages sent with the user's message."""
        return list(self.question.meta.sources)


class ChatSession:
    """One user's state. Create it locked; ``unlock`` or ``create_vault`` first, or use
    :meth:`ephemeral` for a session that writes nothing (``bastion ask`` without a vault)."""

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder or paths.vault_dir()
        self.vault: Vault | None = None
        self._memory: Store | None = None
        self.settings = AppSettings()
        self.conversation: Conversation | None = None
        self.thread: list[Message] = []
        self.model: ModelInfo | None = None
        self.engine: Engine | None = None
        self.preferred_model: str | None = None
        """A model name or path asked for (``ask --model``): it wins over the conversation's."""
        self.require_conversation_model = False
        """Refuse to answer a conversation with another model than the one it was held with
        (``ask --continue``); otherwise the default model stands in."""
        self.system: str | None = None
        """A system prompt for conversations without a pack (``ask --system``)."""
        self.sampling_override: SamplingSettings | None = None
        """Sampling for the next turns, before the conversation's own (``ask`` options)."""
        self.pack: Pack | None = None
        """The domain pack of the current conversation, if any."""
        self.summary_part_tokens = 160
        """Most tokens of each part summary of a whole-document question (map step)."""
        self.documents: list[DocumentRecord] = []
        """The documents the current conversation's turns are grounded on (attached to it,
        or chosen for a new or incognito one and attached when it is first saved)."""
        self.purged_at_unlock = 0
        self.new_recovery_key: str | None = None
        """A recovery key just made (new vault, or a first one offered): the UI shows it
        once, then calls :meth:`forget_recovery_key`."""

    @classmethod
    def ephemeral(cls) -> ChatSession:
        """A session over a store in this process's memory only: built-in packs work, nothing
        is written anywhere (``bastion ask`` when there is no vault or nothing to save)."""
        session = cls()
        session._memory = memory_store()
        pack_library.install_builtins(session._memory)
        return session

    @classmethod
    def over(cls, vault: Vault) -> ChatSession:
        """A session on a vault that is already open (the CLI opens it itself)."""
        session = cls(vault.paths.folder)
        session.vault = vault
        session._after_unlock()
        return session

    # -- vault ----------------------------------------------------------------

    @property
    def vault_exists(self) -> bool:
        return paths.vault_exists(self.folder)

    @property
    def vault_name(self) -> str:
        """The name of the vault this session works on (its folder's name)."""
        for name in paths.vault_names() or [paths.DEFAULT_VAULT]:
            if paths.vault_dir(name) == self.folder:
                return name
        return self.folder.name

    def select_vault(self, name: str) -> None:
        """Work on vault ``name`` from now on (locked). Switching locks the current vault,
        which drops every KV state and decrypted state of it from memory.

        Raises:
            VaultNameError: not a usable name.
        """
        folder = paths.vault_dir(name)
        if folder != self.folder:
            self.lock()
            self.folder = folder

    @property
    def has_recovery_key(self) -> bool:
        return self.vault is not None and self.vault.is_open and self.vault.has_recovery_key

    def add_recovery_key(self) -> str:
        """Make a recovery key for a vault that has none (or replace it); returned and kept in
        :attr:`new_recovery_key` until :meth:`forget_recovery_key`."""
        if self.vault is None or not self.vault.is_open:
            raise LockedError("the vault is locked")
        had = self.vault.has_recovery_key
        self.new_recovery_key = self.vault.rotate_recovery_key()
        audit.record(self.store, "recovery_key.rotate", replaced=had)
        return self.new_recovery_key

    def forget_recovery_key(self) -> None:
        self.new_recovery_key = None

    @property
    def unlocked(self) -> bool:
        return self._memory is not None or (self.vault is not None and self.vault.is_open)

    def create_vault(self, passphrase: bytearray, kdf: KdfParams | None = None) -> None:
        try:
            paths.ensure_private_dir(self.folder.parent)
            self.vault = Vault.create(self.folder, passphrase, kdf)
        finally:
            crypto.wipe(passphrase)
        self.new_recovery_key = self.vault.new_recovery_key
        self.vault.new_recovery_key = None
        audit.record(self.store, "vault.create", recovery_key=self.new_recovery_key is not None)
        audit.record(self.store, "unlock", via="tui", failed_before=0)
        self._after_unlock()

    def unlock(self, passphrase: bytearray, *, accept_rollback: bool = False) -> None:
        try:
            self.vault = Vault.open(self.folder, passphrase, accept_rollback=accept_rollback)
        finally:
            crypto.wipe(passphrase)
        audit.record(self.store, "unlock", via="tui", failed_before=self.vault.failed_unlocks)
        if self.vault.rollback_warning:
            audit.record(self.store, "rollback.accepted")
        self._after_unlock()

    def _after_unlock(self) -> None:
        stored = self.store.get_setting(SETTINGS_KEY, {})
        try:
            self.settings = AppSettings.model_validate(stored)
        except ValueError:
            self.settings = AppSettings()
        pack_library.install_builtins(self.store)
        if self.settings.retention_days:
            cutoff = datetime.now(UTC) - timedelta(days=self.settings.retention_days)
            self.purged_at_unlock = self.store.delete_older_than(cutoff)
            if self.purged_at_unlock:
                audit.record(
                    self.store,
                    "retention.delete",
                    count=self.purged_at_unlock,
                    days=self.settings.retention_days,
                )

    def lock(self) -> None:
        """Close the vault (wiping its key), forget decrypted state and every KV cache."""
        if self.vault is not None and self.vault.is_open:
            with contextlib.suppress(Exception):  # a full disk must not keep the vault open
                audit.record(self.vault.store, "lock", via="tui")
        if self.vault is not None:
            self.vault.close()
        self.vault = None
        self.conversation = None
        self.thread = []
        self.pack = None
        self.new_recovery_key = None
        self.documents = []
        if self.engine is not None:
            self.engine.clear_cache()
        model_choice.forget_kv_state()

    @property
    def store(self) -> Store:
        """The open store.

        Raises:
            LockedError: the vault is locked.
        """
        if self._memory is not None:
            return self._memory
        if self.vault is None or not self.vault.is_open:
            raise LockedError("the vault is locked")
        return self.vault.store

    def save_settings(self, settings: AppSettings) -> None:
        old = self.settings.model_dump(mode="json")
        new = settings.model_dump(mode="json")
        self.settings = settings
        self.store.set_setting(SETTINGS_KEY, new)
        changed = sorted(k for k in new if old.get(k) != new[k])
        if changed:
            audit.record(self.store, "settings.change", keys=changed)

    # -- model ----------------------------------------------------------------

    def available_models(self) -> list[ModelInfo]:
        return model_choice.find_models()

    def load_model(self, info: ModelInfo | None = None) -> Engine:
        """Load ``info`` (or the conversation's, or the default) and record it on the current
        conversation."""
        info = info or self.model_for_conversation()
        self.engine = model_choice.load_engine(info, self.settings.load)
        self.model = info
        if audit.enabled(self.store):
            audit.record(
                self.store,
                "model.load",
                file=info.path.name[:200],
                sha256=model_choice.model_sha256(info),
            )
        conv = self.conversation
        if conv is not None and conv.id != INCOGNITO_ID:
            self.store.update_conversation(
                conv.id, model_name=info.name, model_sha256=model_choice.model_sha256(info)
            )
            self.conversation = self.store.get_conversation(conv.id)
        return self.engine

    def model_for_conversation(self) -> ModelInfo:
        """The model asked for, else the one remembered for the current conversation, else
        the default one.

        Raises:
            NoModelError: nothing usable matches.
        """
        if self.preferred_model:
            return model_choice.pick_model(self.preferred_model)
        conv = self.conversation
        wanted = conv.model_name if conv else None
        if wanted and conv is not None:
            found = self.available_models()
            for info in found:
                if info.name == wanted and info.usable:
                    return info
            if self.require_conversation_model:
                raise NoModelError(
                    f"this conversation was held with model {wanted}, which is not on this "
                    "machine (see `bastion models`); add it, or answer with another one "
                    "using --model"
                )
        return model_choice.pick_model(self.settings.default_model)

    # -- conversations --------------------------------------------------------

    def conversations(self) -> list[Conversation]:
        return self.store.list_conversations()

    def available_packs(self) -> list[InstalledPack]:
        return pack_library.installed(self.store)

    def new_conversation(self, *, incognito: bool = False, pack_id: str | None = None) -> None:
        """Start an empty conversation; it is written only when the first message is sent."""
        self.thread = []
        self.documents = []
        self.pack = pack_library.get(self.store, pack_id).pack if pack_id else None
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
        self.documents = self.store.conversation_documents(conversation_id)

    # -- documents --------------------------------------------------------------

    def attach(self, ref: str, *, keep_original: bool = False) -> DocumentRecord:
        """Ground the current conversation on a document: an id (or prefix) from the library,
        or a file path (read in the sandbox and added to the library first).

        Raises:
            DocumentError: no such document, or the file cannot be read.
        """
        record = doc_library.resolve(self.store, ref, keep_original=keep_original)
        self.attach_record(record)
        return record

    def attach_record(self, record: DocumentRecord) -> None:
        """Attach a document already in the library."""
        if record.id not in {d.id for d in self.documents}:
            self.documents.append(record)
        conv = self.conversation
        if conv is not None and conv.id != INCOGNITO_ID:
            self.store.attach_document(conv.id, record.id)

    def library(self) -> list[DocumentRecord]:
        """Every document in the vault's library, newest first."""
        return self.store.list_documents()

    def add_document(self, path: Path, *, keep_original: bool = False) -> DocumentRecord:
        """Read a file into the library (sandboxed extraction) without attaching it."""
        return doc_library.add_file(self.store, path, keep_original=keep_original).record

    def document_page(self, document_id: str, page: int) -> list[DocumentPage]:
        """One page of a document (empty when it has no such page)."""
        self.store.get_document(document_id)
        return self.store.document_pages(document_id, page, page)

    def remove_document(self, document_id: str) -> None:
        """Delete a document from the vault for good (and from the current conversation)."""
        self.store.remove_document(document_id)
        self.documents = [d for d in self.documents if d.id != document_id]

    def detach(self, document_id: str) -> None:
        """Stop grounding the current conversation on a document (it stays in the library)."""
        self.documents = [d for d in self.documents if d.id != document_id]
        conv = self.conversation
        if conv is not None and conv.id != INCOGNITO_ID:
            self.store.detach_document(conv.id, document_id)

    def _pack_of(self, conv: Conversation) -> Pack | None:
        if not conv.pack_id:
            return None
        try:
            return pack_library.get(self.store, conv.pack_id).pack
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
        audit.record(self.store, "conversation.delete", conversation=conversation_id)
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
        audit.record(
            self.store, "message.delete", conversation=self.conversation.id, message=message_id
        )
        self.thread = self.store.thread(self.conversation.id)

    def search(self, query: str) -> list[SearchHit]:
        return self.store.search(query)

    def sampling(self) -> SamplingSettings:
        if self.sampling_override is not None:
            return self.sampling_override
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
        """Encrypt a conversation to ``out`` (vault key by default), signed with the vault's
        key; atomic, in memory."""
        transfer.export_file(
            self.store,
            [conversation_id],
            out,
            passphrase=passphrase,
            recipients=[export_fmt.parse_recipient(r) for r in recipients or []],
            form=form,
            redact=redact,
        )
        keys = list(recipients or [])
        if passphrase is None and not keys:
            keys = [str(transfer.ensure_identity(self.store).to_public())]
        transfer.record_export(
            self.store,
            "export",
            [conversation_id],
            keys,
            passphrase=passphrase is not None,
            form=form,
            redacted=redact,
        )

    def import_file(self, path: Path, passphrase: str | None = None) -> transfer.ImportResult:
        """Add the conversations of an export as new ones, marked imported; the result says
        whether the file was authentic, unsigned or signed by an unknown key.

        Raises:
            ExportError: unreadable, hostile, malformed or altered (nothing is imported).
        """
        data = export_fmt.read_limited(path)
        plain = transfer.decrypt_export(self.store, data, passphrase)
        result = transfer.import_verified(self.store, plain)
        transfer.record_import(
            self.store,
            "import",
            data,
            result.ids,
            export_fmt.read_header(data),
            result.verification.describe(),
        )
        return result

    # -- branches -------------------------------------------------------------

    def siblings(self, message_id: str) -> list[Message]:
        if self.incognito:
            return [m for m in self.thread if m.id == message_id]
        return self.store.siblings(message_id)

    def branch_position(self, message_id: str) -> tuple[int, int]:
        """(1-based position, count) of a message among its alternatives."""
        ids = [m.id for m in self.siblings(message_id)]
        return (ids.index(message_id) + 1 if message_id in ids else 1), max(len(ids), 1)

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

    # -- turns: the stages of bastion.app.turn, in order ---------------------------------

    def _add(
        self, role: str, content: str, parent_id: str | None, meta: MessageMeta | None = None
    ) -> Message:
        meta = meta or MessageMeta()
        if self.incognito:
            msg = Message(
                id=uuid.uuid4().hex,
                conversation_id=INCOGNITO_ID,
                parent_id=parent_id,
                role=role,
                content=content,
                created=datetime.now(UTC),
                meta=meta,
            )
            self.thread.append(msg)
            return msg
        if self.conversation is None:
            info = self.model
            self.conversation = self.store.create_conversation(
                title_for(content),
                model_name=info.name if info else None,
                model_sha256=model_choice.model_sha256(info) if info else None,
                pack_id=self.pack.id if self.pack else None,
                pack_version=self.pack.version if self.pack else None,
                settings={"sampling": self.sampling().model_dump()},
            )
            if self.system and self.pack is None:
                system = self.store.add_message(
                    self.conversation.id, "system", self.system, parent_id=None, pinned=True
                )
                parent_id = system.id
            for doc in self.documents:
                self.store.attach_document(self.conversation.id, doc.id)
        msg = self.store.add_message(
            self.conversation.id, role, content, parent_id=parent_id, meta=meta
        )
        self.conversation = self.store.get_conversation(self.conversation.id)
        self.thread = self.store.thread(self.conversation.id)
        return msg

    def _warm_pack(self, engine: Engine, pack: Pack) -> float:
        """Make sure the engine holds the KV state of the pack's fixed prefix: already in
        memory, else saved in the vault by an earlier run, else computed now (and saved in the
        vault for the next run). Returns the seconds spent computing it (0 when restored)."""
        messages = turn.prefix_messages(pack)
        tokens = engine.fixed_prefix(messages)
        if engine.saved_prefix(tokens) is not None:
            return 0.0
        key = self._kv_key(engine, pack, tokens)
        saved = self.store.get_kv_state(key) if key else None
        if saved is not None and saved.tokens == tokens:
            engine.load_prefix(tokens, saved.state)
            return 0.0
        _, seconds = engine.remember_prefix(messages)
        state = engine.saved_prefix(tokens)
        if key and state is not None and self.model is not None:
            self.store.save_kv_state(
                KvState(
                    key=key,
                    model_sha256=model_choice.model_sha256(self.model),
                    pack_id=pack.id,
                    pack_version=pack.version,
                    tokens=tokens,
                    state=state,
                    created=datetime.now(UTC),
                )
            )
        return seconds

    def _kv_key(self, engine: Engine, pack: Pack, tokens: list[int]) -> str | None:
        """Where the pack prefix's state is kept in the vault (None: not kept, e.g. the model
        is unknown)."""
        if self.model is None or self._memory is not None:
            return None
        digest = hashlib.sha256()
        for part in (model_choice.model_sha256(self.model), engine.state_key(), pack.id):
            digest.update(part.encode() + b"\0")
        digest.update(",".join(map(str, tokens)).encode())
        return digest.hexdigest()

    def _count_tokens(self, text: str) -> int:
        if self.engine is not None:
            return len(self.engine.tokenize(text))
        return len(text) // 3 + 1  # before a model is loaded: a cautious estimate

    def _checked(self, text: str, lookup: str | None = None) -> turn.CheckedQuestion:
        """Stages 1 and 2 for a new user message: safety, then sources."""
        documents = [] if self._whole_document(text) else self.documents
        return turn.check_question(
            self.store, self.pack, text, self._count_tokens, lookup, documents=documents
        )

    def _whole_document(self, text: str) -> bool:
        return bool(self.documents) and doc_summary.is_whole_document_question(text)

    def _pending(self, upto: list[Message]) -> PendingTurn:
        """Stage 3 for the shown branch ``upto`` (ending with the question)."""
        return PendingTurn(
            question=upto[-1], messages=turn.prompt_messages(self.pack, upto, self.system)
        )

    def prefetch(self, draft: str, cancel: threading.Event | None = None) -> int:
        """While the user types in a pack conversation: find the sources for the draft and
        evaluate the prompt up to where the question goes, so that sending it evaluates little
        more than the question (if the final text finds the same sources). Blocking; nothing
        is written. Returns the tokens evaluated."""
        if not self.unlocked or (self.pack is None and not self.documents):
            return 0
        if self.engine is None or len(draft.strip()) < 8:
            return 0
        if self.pack is not None:
            self._warm_pack(self.engine, self.pack)
        checked = self._checked(draft)
        if checked.response is not None or not checked.meta.sources:
            return 0
        pending = turn.unsaved_question("", MessageMeta(sources=checked.meta.sources))
        messages = turn.prompt_messages(self.pack, [*self.thread, pending], self.system)
        return self.engine.prefill(messages, cancel)

    def send(self, text: str, lookup: str | None = None) -> PendingTurn:
        """Check and save the user's message (acknowledged before generation) and prepare the
        turn.

        ``lookup``: what to search the pack's references with, if not the text itself (the
        values of a template)."""
        parent = self.thread[-1].id if self.thread else None
        self._add("user", text, parent, self._checked(text, lookup).meta)
        pending = self._pending(self.thread)
        if self._whole_document(text) and pending.response is None:
            pending.whole_documents = list(self.documents)
        return pending

    def edit(self, message_id: str, text: str) -> PendingTurn:
        """Resend an edited user message as a new branch beside the original."""
        idx = next(i for i, m in enumerate(self.thread) if m.id == message_id)
        original = self.thread[idx]
        if self.incognito:
            self.thread = self.thread[:idx]
        self._add("user", text, original.parent_id, self._checked(text).meta)
        return self._pending(self.thread)

    def regenerate(self) -> PendingTurn | None:
        """Prepare a new answer to the last user message (the old one stays a branch)."""
        idx = max((i for i, m in enumerate(self.thread) if m.role == "user"), default=None)
        if idx is None:
            return None
        # Show the branch the new answer extends; a saved old answer stays a branch (in
        # incognito, nothing is kept, so it is simply dropped).
        upto = self.thread[: idx + 1]
        self.thread = upto
        return self._pending(upto)

    def generate(self, pending: PendingTurn, progress: PrefillProgress | None = None) -> Generation:
        """Stage 4: start the answer (blocking until the context is fitted); iterate it for
        text.

        A pack's fixed safety response is the answer as is, and no model is chosen or loaded.
        Otherwise the model is loaded if needed and the pack's prefix state restored (computed
        once per model and pack version).

        Raises:
            PackContextError: the model's context is smaller than the pack needs.
        """
        if pending.response is not None:
            pending.generation = Generation(iter([pending.response]), TurnStats())
            return pending.generation
        engine = self.engine if self.engine is not None else self.load_model()
        if pending.whole_documents:
            try:
                self._read_whole(engine, pending)
            except doc_summary.Cancelled:  # Esc while reading: an empty, cancelled answer
                pending.generation = Generation(iter(()), TurnStats())
                return pending.generation
        if self.pack is not None:
            if engine.n_ctx < self.pack.min_context:
                raise PackContextError(
                    f"pack {self.pack.id} needs a context of {self.pack.min_context} tokens; "
                    f"the model is loaded with {engine.n_ctx}"
                )
            pending.prefix_s = self._warm_pack(engine, self.pack)
        pending.generation = engine.chat(
            pending.messages, self.sampling(), cancel=pending.cancel, progress=progress
        )
        return pending.generation

    def _read_whole(self, engine: Engine, pending: PendingTurn) -> None:
        """A whole-document question: read every page (map-reduce when longer than the
        context), store the resulting sources with the question (so the branch re-renders
        identically) and rebuild the prompt.

        Raises:
            doc_summary.Cancelled: stopped by the user between two steps.
        """
        sources = doc_summary.prepare(
            engine,
            self.store,
            pending.whole_documents,
            progress=pending.progress,
            cancel=pending.cancel,
            answer_reserve=min(self.sampling().max_tokens, engine.n_ctx // 4) + 200,
            part_tokens=self.summary_part_tokens,
        )
        meta = pending.question.meta.model_copy(update={"sources": sources})
        question = pending.question.model_copy(update={"meta": meta})
        if not self.incognito:
            self.store.update_message(question.id, meta=meta)
        self.thread = [question if m.id == question.id else m for m in self.thread]
        pending.question = question
        upto = self.thread[: [m.id for m in self.thread].index(question.id) + 1]
        pending.messages = turn.prompt_messages(self.pack, upto, self.system)
        pending.whole_documents = []

    def finish(self, pending: PendingTurn, text: str) -> Message:
        """Stage 5 and save: the answer (a stopped one too, marked by its stop reason), with
        the notices of the question and of the answer, and the sources it was given."""
        assert pending.generation is not None
        stats = pending.generation.stats
        if pending.cancel.is_set():
            stats.stop_reason = StopReason.CANCELLED
        if pending.prefix_s:
            # The first conversation with a pack also waited for its prefix to be computed:
            # that is part of the wait for the first token.
            stats.prefix_prefill_s = pending.prefix_s
            stats.time_to_first_token_s += pending.prefix_s
        if pending.response is not None:
            meta = MessageMeta(fixed_response=True, safety=pending.notices)
        else:
            meta = MessageMeta.model_validate(stats.model_dump(mode="json"))
            meta.safety = pending.notices + turn.check_answer(
                self.pack, text, pending.sources, pending.question.content
            )
            meta.sources = [s.model_copy(update={"text": None}) for s in pending.sources]
        return self._add("assistant", text, pending.parent_id, meta)
