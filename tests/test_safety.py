"""Safety rules that catch real emergencies: RE2 only, normalisation against disguises,
negation, the uncertain tier, dose corrections, the corpus guard, fixed responses that never
wait for a model, and built-in packs that an import or a backup cannot replace."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from bastion.app import pack_library, packs, transfer, turn
from bastion.app.packs import PackError, Trust
from bastion.app.session import ChatSession
from bastion.storage import export as export_fmt
from bastion.storage.vault import memory_store
from tests.conftest import bastion_cmd
from tests.test_cli_history import FAST, ok, run

ROOT = Path(__file__).resolve().parent.parent

MINIMAL = """\
id = "demo"
name = "Demo"
version = "1.2.0"
description = "A pack for tests."
author = "Tests"
license = "CC0-1.0"
language = "en"
system_prompt = "You help."
disclaimer = "Not advice."
"""


def _corpus() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "bastion_test_safety_corpus", ROOT / "tests" / "data" / "safety" / "corpus.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


CORPUS = _corpus()


def responds(pack_id: str, text: str) -> list[str]:
    return [r.id for r in packs.builtin(pack_id).check(text, "input") if r.action == "respond"]


# -- RE2 ------------------------------------------------------------------------------------


def _redos_pack(tmp_path: Path) -> Path:
    path = tmp_path / "redos.toml"
    path.write_text(
        MINIMAL
        + '\n[[safety]]\nid = "r"\ndescription = "d"\naction = "respond"\n'
        + 'any = ["(a+)+b"]\nmessage = "m"\npositive = ["aaab"]\n'
        + f'negative = ["{"a" * 40}", "{"a" * 5000}!"]\n'
    )
    return path


def test_catastrophic_pattern_cannot_stall_validate(tmp_path: Path) -> None:
    """`(a+)+b` against 40 a's ran past 60 s under Python's re; RE2 answers at once."""
    proc = subprocess.run(
        [*bastion_cmd(), "packs", "validate", str(_redos_pack(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "demo 1.2.0: valid" in proc.stdout


def test_catastrophic_pattern_cannot_stall_ask(tmp_path: Path) -> None:
    """The same rule in an imported pack, through `ask --pack`, answers with its fixed text."""
    ok(run(tmp_path, "init", *FAST))
    ok(run(tmp_path, "packs", "import", str(_redos_pack(tmp_path))))
    out = ok(run(tmp_path, "ask", "--pack", "demo", "a" * 40 + "b", "--model", "/missing"))
    assert out.stdout.strip() == "m"


@pytest.mark.parametrize(
    ("pattern", "why"),
    [("(?=x)chest", "invalid perl operator"), ("(a)\\\\1", "invalid escape sequence")],
)
def test_patterns_re2_cannot_run_are_refused_with_file_line_field(
    tmp_path: Path, pattern: str, why: str
) -> None:
    """Look-arounds and back-references are refused at load, naming file, line and field."""
    path = tmp_path / "pack.toml"
    path.write_text(
        MINIMAL
        + '\n[[safety]]\nid = "r"\ndescription = "d"\n'
        + f'any = ["{pattern}"]\nmessage = "m"\npositive = ["x"]\nnegative = ["y"]\n'
    )
    with pytest.raises(PackError) as err:
        packs.load(path)
    msg = str(err.value)
    assert msg.startswith("pack.toml line 14: safety[0].any: pattern 1"), msg
    assert "RE2 cannot run it" in msg and why in msg


def test_unknown_concept_and_failing_uncertain_example_name_the_field(tmp_path: Path) -> None:
    """Concept references and uncertain-tier examples are checked at load like the rest."""
    path = tmp_path / "pack.toml"
    path.write_text(
        MINIMAL
        + '\n[concepts]\nchest = ["chest", "breastbone"]\n'
        + '\n[[safety]]\nid = "r"\ndescription = "d"\naction = "respond"\n'
        + 'any = [" {chest} {pain}"]\nmessage = "m"\npositive = ["x"]\nnegative = ["y"]\n'
    )
    with pytest.raises(PackError, match=r"safety\[0\]\.any: unknown concept \{pain\}"):
        packs.load(path)


def test_concepts_match_synonyms_lemmas_and_typos(tmp_path: Path) -> None:
    """A concept matches its terms in any inflection and with a typo; negation cancels."""
    path = tmp_path / "pack.toml"
    path.write_text(
        MINIMAL
        + '\n[concepts]\nnegation = ["no", "not", "never"]\n'
        + 'fall = ["collapse", "pass out", "faint*"]\n'
        + '\n[[safety]]\nid = "r"\ndescription = "d"\naction = "respond"\n'
        + 'any = [" {fall}"]\nmessage = "m"\n'
        + 'positive = ["he collapsed", "she passed out", "I keep fainting", "he colapsed"]\n'
        + 'negative = ["he never collapsed", "what a nice day"]\n'
    )
    pack = packs.load(path)
    assert [h.concepts for h in pack.evaluate("my dad collapsed", "input")] == [["fall"]]


# -- normalisation and negation -------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "I want to ki\u200bll myself",  # zero-width space
        "I want to \u0441ut myself",  # Cyrillic es
        "I want to ki\u00adll myself",  # soft hyphen
        "I want to kll myself",  # typo
        "I want to k1ll myself",  # leet
        "I want to ｋｉｌｌ myself",  # fullwidth
        "i wnat to kill myslef",  # two typos
        "\u200bI\u2060 want to die\u200d",  # word joiner, zero-width joiner
    ],
)
def test_disguised_red_flags_still_fire(text: str) -> None:
    """Variants that got through 6 times out of 8 before: each is folded or corrected."""
    assert responds("medical", text) == ["suicide"]


def test_measured_misses_now_fire() -> None:
    """The messages the issue lists as missed now get the fixed response."""
    assert responds("medical", "I took 40 paracetamol tablets") == ["overdose"]
    assert responds("medical", "pain in the middle of my chest spreading to my jaw") == [
        "chest-pain"
    ]
    assert responds("medical", "my dad collapsed and isn't breathing") != []
    assert responds("medical", "I think I'm having a stroke") == ["stroke"]


@pytest.mark.parametrize(
    "text",
    [
        "no chest pain, just heartburn after meals",
        "I'm not suicidal, I just feel a bit flat",
        "he doesn't have a fever and isn't drowsy",
        "what are the warning signs of a stroke?",
        "what is the maximum dose of paracetamol?",
        "I took two paracetamol an hour ago, can I take ibuprofen now?",
    ],
)
def test_negated_and_informational_messages_get_no_fixed_response(text: str) -> None:
    """Negation and informational framing keep ordinary questions for the model."""
    assert responds("medical", text) == []


@pytest.mark.parametrize(
    "text",
    [
        "my dad has crushing chest pain and is sweating",
        "our baby is 5 weeks old and has a temperature of 38.4",
        "my wife's face has dropped on one side",
        "my son swallowed a button battery",
    ],
)
def test_third_persons_fire(text: str) -> None:
    """Messages about someone else (a parent, a child, a partner) get the fixed response."""
    assert responds("medical", text) != []


def test_uncertain_tier_shows_a_caution_with_emergency_numbers_above_the_answer() -> None:
    """Chest pain without the rest of a heart attack's signs: a caution, not a replacement."""
    pack = packs.builtin("medical")
    checked = turn.check_question(None, pack, "I've had chest pain since yesterday", len)
    assert checked.response is None
    (notice,) = [n for n in checked.meta.safety if n.rule == "chest-pain"]
    assert notice.action == "caution" and "999" in notice.message and "911" in notice.message


# -- dose checks ----------------------------------------------------------------------------


def test_wrong_maximum_dose_gets_a_correction_naming_the_limit_and_source() -> None:
    """ "The maximum for an adult is 12 grams" after 40 paracetamol: corrected, with the
    documented 4 g and its source (before: only the generic dose caution)."""
    pack = packs.builtin("medical")
    notices = turn.check_answer(
        pack, "The maximum for an adult is 12 grams.", question="I took 40 paracetamol tablets"
    )
    (fix,) = [n for n in notices if n.rule == "dose-check:paracetamol"]
    assert fix.stage == "output" and fix.action == "caution"
    assert "12 g of paracetamol" in fix.message and "4 g in 24 hours" in fix.message
    assert "NHS 'Paracetamol for adults'" in fix.message


@pytest.mark.parametrize(
    ("answer", "question", "wrong"),
    [
        ("Adults can take 1 g up to four times in 24 hours, at most 4 g a day.", None, False),
        ("Take two 500 mg tablets of paracetamol up to 4 times a day.", None, False),
        ("You can take 3 tablets of 500 mg paracetamol at once.", None, True),
        ("Ibuprofen: 400 mg three times a day, up to 3,200 mg a day.", None, True),
        ("Give 15 mg/kg per dose of paracetamol.", None, False),
        ("The usual dose is 600 mg every 4 hours.", "can I take aspirin for a headache", False),
        ("Up to 6000 mg a day is fine.", "how much aspirin can I take", True),
        ("Aspirin 75 mg; paracetamol 1 g; ibuprofen 400 mg.", None, False),
    ],
)
def test_stated_doses_are_compared_with_the_table(
    answer: str, question: str | None, wrong: bool
) -> None:
    """Single and daily amounts, tablet counts, per-kg doses and the question's medicine."""
    assert bool(packs.builtin("medical").check_doses(answer, question)) is wrong


def test_dose_table_covers_the_references_with_sources() -> None:
    """Every medicine the medical references cover has documented, sourced limits."""
    pack = packs.builtin("medical")
    ids = {d.id for d in pack.doses}
    assert {"paracetamol", "ibuprofen", "aspirin", "warfarin"} <= ids
    assert all(d.source and (d.max_daily_mg or d.max_single_mg) for d in pack.doses)


def test_session_saves_the_dose_correction_with_the_answer() -> None:
    """Stage 5 of a real turn stores the correction in the answer's safety notices."""
    from bastion.models.engine import Generation, TurnStats

    session = ChatSession.ephemeral()
    session.new_conversation(incognito=True, pack_id="medical")
    pending = session.send("What is the maximum dose of paracetamol for an adult?")
    pending.generation = Generation(iter([]), TurnStats())
    answer = session.finish(pending, "The maximum for an adult is 12 grams in a day.")
    assert any(n.rule == "dose-check:paracetamol" for n in answer.meta.safety)


# -- the corpus -----------------------------------------------------------------------------


def test_corpus_is_large_and_varied_enough() -> None:
    """At least 400 emergencies in 12 categories, 400 ordinary questions, 150 + 150 legal."""
    emergency = CORPUS.messages("medical", "emergency")
    assert len(emergency) >= 12 and sum(map(len, emergency.values())) >= 400
    assert sum(map(len, CORPUS.messages("medical", "ordinary").values())) >= 400
    assert sum(map(len, CORPUS.messages("legal", "positive").values())) >= 150
    assert sum(map(len, CORPUS.messages("legal", "negative").values())) >= 150
    both = list(CORPUS.all_messages())
    halves = [CORPUS.half(m) for m in both]
    assert 0.4 < halves.count("dev") / len(halves) < 0.6


@pytest.mark.parametrize("pack_id", ["medical", "legal"])
def test_held_out_recall_and_false_alarms_stay_within_the_guard(pack_id: str) -> None:
    """The regression guard: held-out recall >= 95% and false alarms <= 5% (goal 97% / 3%,
    measured by bench/safety.py)."""
    score = CORPUS.evaluate(pack_id, packs.builtin(pack_id), "held-out")
    assert score.total_recall >= 0.95, score.recall
    assert score.total_false_alarm_rate <= 0.05, score.false_alarms


def test_disguised_variants_of_held_out_emergencies_still_fire() -> None:
    """Zero-width, Cyrillic, soft hyphen, typo and leet variants keep >= 95% recall."""
    fires = CORPUS.medical_fires(packs.builtin("medical"))
    caught = total = 0
    for msgs in CORPUS.messages("medical", "emergency", "held-out").values():
        for m in msgs:
            for v in CORPUS.variants(m).values():
                caught += fires(v, "x")
                total += 1
    assert total > 500 and caught / total >= 0.95


# -- fixed responses never wait for a model -------------------------------------------------


def _broken_model(tmp_path: Path) -> Path:
    models = tmp_path / "data" / "models"
    models.mkdir(parents=True, exist_ok=True)
    broken = models / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\x00" * 64)
    return broken


@pytest.mark.parametrize("model", ["/missing/model.gguf", "BROKEN"])
def test_fixed_response_without_a_usable_model_in_every_cli_path(
    tmp_path: Path, model: str
) -> None:
    """ask, ask --save, ask --continue and a template answer a red flag with the fixed
    response while --model names a missing file or a broken GGUF."""
    broken = _broken_model(tmp_path)
    model = str(broken) if model == "BROKEN" else model
    suicide = next(r for r in packs.builtin("medical").safety if r.id == "suicide").message
    chest = next(r for r in packs.builtin("medical").safety if r.id == "chest-pain").message
    plain = ok(run(tmp_path, "ask", "--pack", "medical", "--model", model, "I want to k1ll myself"))
    assert plain.stdout.strip() == suicide
    ok(run(tmp_path, "init", *FAST))
    saved = ok(
        run(tmp_path, "ask", "--pack", "medical", "--save", "--model", model, "i want to die")
    )
    assert saved.stdout.strip() == suicide
    conv = saved.stderr.strip().split()[-1]
    more = ok(
        run(tmp_path, "ask", "--continue", conv, "--model", model, "crushing chest pain, sweaty")
    )
    assert more.stdout.strip() == chest
    template = ok(
        run(
            tmp_path,
            *("ask", "--pack", "medical", "--model", model, "--template", "symptom"),
            *("--var", "symptom=crushing chest pain and I can't breathe"),
            *("--var", "duration=an hour", "--var", "age=60"),
        )
    )
    assert template.stdout.strip() == chest


def test_session_gives_fixed_response_without_choosing_a_model(tmp_path: Path) -> None:
    """The app's path (ChatSession.send then generate): no model is picked or loaded, even
    with only a broken GGUF on offer and when continuing a conversation."""
    broken = _broken_model(tmp_path)
    session = ChatSession.ephemeral()
    session.preferred_model = str(broken)
    session.new_conversation(pack_id="medical")
    for text in ("my baby is 3 weeks old and has a fever", "he's not breathing"):
        pending = session.send(text)
        assert pending.response is not None
        gen = session.generate(pending)
        assert "".join(gen) == pending.response
        session.finish(pending, pending.response)
    assert session.engine is None and session.model is None


# -- packs check ----------------------------------------------------------------------------


def test_packs_check_prints_rules_actions_and_concepts(tmp_path: Path) -> None:
    """`packs check --json` and `-` for one message per line; no model is involved."""
    _broken_model(tmp_path)
    out = ok(run(tmp_path, "packs", "check", "medical", "--json", "I took 40 paracetamol"))
    (hit,) = json.loads(out.stdout)["fired"]
    assert hit["id"] == "overdose" and hit["action"] == "respond"
    assert {"ingest", "lots", "meds"} <= set(hit["concepts"])
    proc = subprocess.run(
        [*bastion_cmd(), "packs", "check", "medical", "--json", "-"],
        input="no chest pain at all\nchest pain since yesterday\n",
        capture_output=True,
        text=True,
        timeout=60,
        env={**__import__("os").environ},
    )
    assert proc.returncode == 0, proc.stderr
    first, second = (json.loads(line) for line in proc.stdout.splitlines())
    assert first == {"fired": []}
    assert [(f["id"], f["action"], f["tier"]) for f in second["fired"]] == [
        ("chest-pain", "caution", "uncertain")
    ]
    answer = ok(
        run(tmp_path, "packs", "check", "medical", "--stage", "output", "Take 12 g of aspirin.")
    )
    assert "dose-check:aspirin" in answer.stdout
    empty = run(tmp_path, "packs", "check", "medical", "  ")
    assert empty.returncode != 0 and len(empty.stderr.strip().splitlines()) == 1


# -- built-ins cannot be replaced -----------------------------------------------------------


def _rule_less_medical(version: str = "9.0.0") -> packs.Pack:
    return packs.parse(
        MINIMAL.replace('id = "demo"', 'id = "medical"').replace('"1.2.0"', f'"{version}"')
    )


def test_unsigned_pack_cannot_replace_a_builtin(tmp_path: Path) -> None:
    """An unsigned `medical` 9.0.0 without rules was imported as an upgrade; now refused,
    and the chest-pain message still gets the fixed response."""
    store = memory_store()
    pack_library.install_builtins(store)
    with pytest.raises(PackError, match="id of a built-in pack"):
        pack_library.plan_import(store, _rule_less_medical())
    ok(run(tmp_path, "init", *FAST))
    path = tmp_path / "medical.toml"
    path.write_text(_rule_less_medical().to_toml())
    refused = run(tmp_path, "packs", "import", str(path), "--yes")
    assert refused.returncode != 0 and "id of a built-in pack" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) <= 2
    listed = json.loads(ok(run(tmp_path, "packs", "list", "--json")).stdout)
    assert ("medical", "built-in") in [(p["id"], p["trust"]) for p in listed]
    red = ok(
        run(
            tmp_path,
            "ask",
            "--pack",
            "medical",
            "--model",
            "/missing",
            "crushing chest pain and sweating",
        )
    )
    assert red.stdout.strip().startswith("Chest pain with breathlessness")


def test_trusted_signed_replacement_needs_confirmation_and_is_kept() -> None:
    """A built-in can be replaced by a pack signed by a trusted key, after confirming."""
    store = memory_store()
    pem, public = packs.new_signing_key()
    key = packs.load_signing_key(pem)
    pack = _rule_less_medical()
    signed = packs.parse(
        packs.signed_toml(pack.to_toml(), packs.signature_for(pack, key, "Our clinic"))
    )
    with pytest.raises(PackError):
        pack_library.plan_import(store, signed)  # signed, but the key is not trusted
    pack_library.trust_key(store, public, "Our clinic")
    plan = pack_library.plan_import(store, signed)
    assert plan.replaces_builtin and plan.needs_confirmation
    pack_library.apply_import(store, plan)
    assert pack_library.install_builtins(store) == ["legal"]
    assert pack_library.get(store, "medical").trust is Trust.VERIFIED


def test_missing_altered_or_replaced_builtins_are_repaired_at_start() -> None:
    """An unsigned pack under a built-in's id (left by an older version), an altered
    built-in and a missing one are all written again when the vault opens."""
    store = memory_store()
    pack_library.save(store, _rule_less_medical(), None)  # what the old import left
    legal = packs.builtin("legal").to_toml().replace("Legal information", "Altered", 1)
    pack_library.save(store, packs.parse(legal), packs.BUILTIN_SIGNER)
    assert sorted(pack_library.install_builtins(store)) == ["legal", "medical"]
    for pack_id in ("legal", "medical"):
        found = pack_library.get(store, pack_id)
        assert found.trust is Trust.BUILTIN
        assert found.record.source == packs.builtin(pack_id).to_toml()
    store.remove_pack("legal")
    assert pack_library.install_builtins(store) == ["legal"]
    assert pack_library.install_builtins(store) == []


def _crafted_backup() -> dict[str, object]:
    source = memory_store()
    pack_library.install_builtins(source)
    doc = transfer.build_backup(source)
    rule_less = _rule_less_medical("1.0.0")
    other = packs.parse(MINIMAL)
    doc["packs"] = [
        {
            "id": "medical",
            "version": "1.0.0",
            "name": "x",
            "source": rule_less.to_toml(),
            "signer": packs.BUILTIN_SIGNER,
        },
        {
            "id": "demo",
            "version": "1.2.0",
            "name": "Demo",
            "source": other.to_toml(),
            "signer": packs.BUILTIN_SIGNER,
        },
    ]
    _, public = packs.new_signing_key()
    doc["settings"] = {pack_library.TRUSTED_KEYS: {public: "NHS England"}}
    return doc


def test_crafted_backup_cannot_mark_a_pack_builtin_nor_add_trusted_keys() -> None:
    """restore trusted the backup's `signer` and settings: a rule-less pack showed as
    built-in and a key named after a health service became trusted."""
    store = memory_store()
    pack_library.install_builtins(store)
    transfer.restore_backup(store, _crafted_backup())
    medical = pack_library.get(store, "medical")
    assert medical.trust is Trust.BUILTIN and len(medical.pack.safety) >= 10
    assert pack_library.get(store, "demo").trust is Trust.UNSIGNED
    assert pack_library.trusted_keys(store) == {}


def test_restore_adds_backup_keys_only_after_showing_and_confirming() -> None:
    """The keys are shown to the confirmation; accepted, they are trusted."""
    doc = _crafted_backup()
    shown: list[dict[str, str]] = []
    declined = memory_store()
    transfer.restore_backup(declined, doc, lambda keys: shown.append(keys) or False)
    assert list(shown[0].values()) == ["NHS England"]
    assert pack_library.trusted_keys(declined) == {}
    accepted = memory_store()
    transfer.restore_backup(accepted, doc, lambda keys: True)
    assert list(pack_library.trusted_keys(accepted).values()) == ["NHS England"]
    # Still never built-in: the backup's `signer` is ignored.
    assert pack_library.get(accepted, "demo").trust is Trust.UNSIGNED


def test_restore_cli_refuses_keys_without_a_terminal_or_yes(tmp_path: Path) -> None:
    """Through the CLI, a backup with trusted keys needs a terminal to confirm, or --yes."""
    ok(run(tmp_path, "init", *FAST))
    doc = _crafted_backup()
    blob = export_fmt.encrypt(json.dumps(doc).encode(), recipients=[], passphrase="backup-pass")
    path = tmp_path / "backup.age"
    path.write_bytes(blob)
    ok(run(tmp_path, "init", *FAST, BASTION_DATA_DIR=str(tmp_path / "second")))
    env = {"BASTION_DATA_DIR": str(tmp_path / "second"), "BASTION_EXPORT_PASSPHRASE": "backup-pass"}
    first = run(tmp_path, "restore", str(path), **env)
    assert first.returncode != 0 and "--yes" in first.stderr
    done = run(tmp_path, "restore", str(path), "--yes", **env)
    assert done.returncode == 0, done.stderr
    assert "NHS England" in done.stderr


async def test_app_gives_fixed_response_when_the_model_cannot_load(private_dirs: Path) -> None:
    """In the app, with a broken GGUF as the default model, a red flag still gets the fixed
    response (the model load fails on its own; the turn never waits for it)."""
    from bastion.storage.vault import Vault
    from bastion.tui.app import BastionApp
    from tests.conftest import FAST_KDF
    from tests.test_tui import PW, SIZE, send, start_medical, unlock

    broken = _broken_model(private_dirs)
    with Vault.create(private_dirs / "data" / "vault", PW, FAST_KDF) as v:
        v.store.set_setting("app", {"default_model": str(broken)})
    collapse = next(r for r in packs.builtin("medical").safety if r.id == "collapse").message
    app = BastionApp(kdf=FAST_KDF)
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot, app)
        await start_medical(pilot, app)
        await send(pilot, app, "my dad collapsed and isnt breathing")
        answer = app.session.thread[-1]
        assert answer.role == "assistant" and answer.content == collapse
        assert app.session.engine is None
