"""Domain packs: format, schema, built-ins, safety rules, templates, references, signatures
and every kind of bad input."""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bastion.app import pack_library, packs, turn
from bastion.app.packs import PackError, SignatureMismatchError, TemplateError, Trust
from bastion.storage.schema import Message, MessageMeta
from bastion.storage.vault import memory_store

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schemas" / "pack.schema.json"

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

RULE = """
[[safety]]
id = "red"
description = "A red flag."
action = "respond"
any = ["{pattern}"]
message = "Fixed."
positive = ["{positive}"]
negative = ["nothing here"]
"""


def write(tmp_path: Path, text: str, name: str = "pack.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def words(text: str) -> int:
    return len(text.split()) * 2


def make_message(role: str, content: str, meta: MessageMeta | None = None) -> Message:
    return Message(
        id=uuid.uuid4().hex,
        conversation_id="c",
        parent_id=None,
        role=role,
        content=content,
        created=datetime.now(UTC),
        meta=meta or MessageMeta(),
    )


def problems(text: str, tmp_path: Path) -> list[str]:
    with pytest.raises(PackError) as info:
        packs.load(write(tmp_path, text))
    return info.value.problems


# -- schema and built-ins -----------------------------------------------------------------


def test_committed_schema_matches_the_model() -> None:
    assert SCHEMA_PATH.read_text() == packs.json_schema_text(), (
        "schemas/pack.schema.json is out of date: run `python scripts/pack_schema.py`"
    )


@pytest.mark.parametrize("pack_id", ["medical", "legal"])
def test_builtin_pack_validates_and_is_complete(pack_id: str) -> None:
    pack = packs.builtin(pack_id)
    assert pack_id in packs.builtin_ids()
    assert len(pack.templates) >= 8
    assert len(pack.safety) >= 10
    assert len(pack.references) >= 8 and all(r.source and r.text for r in pack.references)
    assert len(pack.eval) >= 20
    assert pack.disclaimer and pack.examples
    # Both stages are covered, and there are fixed responses for emergencies.
    assert {r.stage for r in pack.safety} == {"input", "output"}
    assert any(r.action == "respond" for r in pack.safety)


def _all_rules() -> list[tuple[str, str, packs.SafetyRule]]:
    return [(p, f"{p}:{r.id}", r) for p in packs.builtin_ids() for r in packs.builtin(p).safety]


@pytest.mark.parametrize(
    ("pack_id", "name", "rule"), _all_rules(), ids=[n for _, n, _ in _all_rules()]
)
def test_every_safety_rule_fires_on_its_positives_only(
    pack_id: str, name: str, rule: packs.SafetyRule
) -> None:
    """Each built-in rule fires on its own positives (whatever the case and punctuation) and
    not on its negatives, in its pack (rules use the pack's concepts)."""
    pack = packs.builtin(pack_id)

    def fires(text: str) -> bool:
        return rule.id in [r.id for r in pack.check(text, rule.stage)]

    assert rule.positive and rule.negative
    for text in rule.positive:
        assert fires(text), f"{name} should fire on {text!r}"
        # Case, punctuation and accents do not matter: text is normalised first.
        assert fires(text.upper().replace(" ", "  ") + "!!"), name
    for text in rule.negative:
        assert not fires(text), f"{name} should not fire on {text!r}"


def test_red_flags_come_first_and_answer_without_the_model() -> None:
    medical = packs.builtin("medical")
    hits = medical.check("What dose of aspirin? I have chest pain and can't breathe", "input")
    assert [h.id for h in hits][:1] == ["chest-pain"] and hits[0].action == "respond"
    assert "dose-request" in [h.id for h in hits]
    assert medical.check("How do vaccines work?", "input") == []
    legal = packs.builtin("legal")
    assert [h.id for h in legal.check("Will I win my case in the UK?", "input")] == [
        "legal-opinion"
    ]


def test_normalise() -> None:
    assert packs.normalise("Can’t  BREATHE—chest   pain!") == " cant breathe chest pain "
    assert packs.normalise("Café") == " cafe "


# -- templates ------------------------------------------------------------------------------


def test_template_renders_and_refuses_missing_or_wrong_values() -> None:
    lab = packs.builtin("medical").template("lab")
    text = lab.render({"test": "HbA1c", "value": "44", "unit": "mmol/mol"})
    assert "test HbA1c, value 44 mmol/mol" in text and "{" not in text
    with pytest.raises(TemplateError, match=r"Value \(value\) is required"):
        lab.render({"test": "HbA1c", "unit": "mmol/mol"})
    with pytest.raises(TemplateError, match="must be a number"):
        lab.render({"test": "HbA1c", "value": "high", "unit": "%"})
    with pytest.raises(TemplateError, match="no variable 'colour'"):
        lab.render({"test": "x", "value": "1", "unit": "u", "colour": "red"})
    leaflet = packs.builtin("medical").template("leaflet")
    with pytest.raises(TemplateError, match="one of: simple, standard, clinical"):
        leaflet.render({"condition": "asthma", "level": "expert"})
    # A value is inserted literally: braces in it are not placeholders.
    term = packs.builtin("medical").template("term")
    assert "{value}" in term.render({"term": "{value}"})
    with pytest.raises(TemplateError):
        packs.builtin("medical").template("nope")


# -- references -----------------------------------------------------------------------------


def test_references_found_for_relevant_questions_only() -> None:
    store = memory_store()
    assert pack_library.install_builtins(store) == ["legal", "medical"]
    assert pack_library.install_builtins(store) == []  # already there
    medical = packs.builtin("medical")
    count = words
    found = turn.find_sources(
        store, medical, "What is the maximum daily dose of paracetamol?", count
    )
    assert found and found[0].ref_id == "paracetamol"
    assert {c.ref_id for c in found} <= {r.id for r in medical.references}
    assert turn.find_sources(store, medical, "What is the capital of France?", count) == []
    assert turn.find_sources(store, medical, "How do I bake sourdough bread?", count) == []
    # The budget is respected.
    assert turn.find_sources(store, medical, "paracetamol dose liver", count, budget=1) == []
    legal = packs.builtin("legal")
    hits = turn.find_sources(store, legal, "How long to protect my tenancy deposit?", count)
    assert hits[0].ref_id == "tenancy-deposits"


def test_grounded_turn_and_model_messages() -> None:
    store = memory_store()
    pack_library.install_builtins(store)
    medical = packs.builtin("medical")
    checked = turn.check_question(store, medical, "Paracetamol dose for adults?", words)
    assert checked.response is None
    assert [n.rule for n in checked.meta.safety] == ["dose-request"]
    sources = checked.meta.sources
    assert sources[0].n == 1 and sources[0].title.startswith("Paracetamol")
    red = turn.check_question(store, medical, "my face is drooping and speech slurred", words)
    assert red.response and "stroke" in red.response and not red.meta.sources

    q = make_message("user", "Paracetamol dose for adults?", meta=checked.meta)
    msgs = turn.prompt_messages(medical, [q])
    assert msgs[0].role == "system" and msgs[0].content == medical.system_prompt.strip()
    assert len(msgs) == 1 + 2 * len(medical.examples) + 1
    assert msgs[-1].content.startswith("Sources:\n[1] ") and msgs[-1].content.endswith(
        "Question: Paracetamol dose for adults?"
    )
    # A question answered by a fixed response is not shown to the model later.
    q2 = make_message("user", "my face is drooping")
    a2 = make_message("assistant", red.response or "", meta=MessageMeta(fixed_response=True))
    later = turn.prompt_messages(medical, [q, make_message("assistant", "ok"), q2, a2])
    assert [m.content for m in later[-2:]][-1] == "ok"


# -- signatures -----------------------------------------------------------------------------


def _signed_copy(tmp_path: Path) -> tuple[Path, str, object]:
    folder = tmp_path / "medical"
    shutil.copytree(packs.builtin_path("medical"), folder)
    pem, public = packs.new_signing_key()
    key = packs.load_signing_key(pem)
    pack = packs.load(folder)
    sig = packs.signature_for(pack, key, "Clinic IT")
    toml = folder / "pack.toml"
    toml.write_text(packs.signed_toml(toml.read_text(), sig))
    return folder, public, key


def test_signature_verified_untrusted_unsigned_and_rejected(tmp_path: Path) -> None:
    folder, public, key = _signed_copy(tmp_path)
    pack = packs.load(folder)
    assert pack.signature is not None and pack.signature.public_key == public
    assert packs.verify(pack, {public: "Our clinic"}) == (Trust.VERIFIED, "Our clinic")
    assert packs.verify(pack, {}) == (Trust.UNTRUSTED, "Clinic IT")
    assert packs.verify(packs.builtin("legal"), {public: "x"}) == (Trust.UNSIGNED, None)
    # The signature covers content, not layout: the single-file export still verifies.
    single = packs.parse(pack.to_toml())
    assert packs.verify(single, {public: "Our clinic"})[0] is Trust.VERIFIED
    # Re-signing replaces the old signature instead of adding a second table.
    again = packs.signed_toml(
        (folder / "pack.toml").read_text(), packs.signature_for(pack, key, "Clinic IT")
    )
    assert again.count("[signature]") == 1
    # Any change to the content, including a reference file, breaks it.
    ref = folder / "references" / "paracetamol.md"
    ref.write_text(ref.read_text().replace("4 grams", "8 grams"))
    with pytest.raises(SignatureMismatchError, match="does not match"):
        packs.verify(packs.load(folder), {public: "Our clinic"})
    # A signature from a different key with the same claimed name is rejected too.
    tampered = single.model_copy(update={"version": "9.9.9"})
    with pytest.raises(SignatureMismatchError):
        packs.verify(tampered, {})


def test_import_plan_versions() -> None:
    """A newer version upgrades silently; an equal or older one asks (built-in ids are
    refused unless signed by a trusted key: tests/test_safety.py)."""
    store = memory_store()
    pack_library.install_builtins(store)
    clinic = packs.builtin("medical").model_copy(update={"id": "clinic"})
    pack_library.apply_import(store, pack_library.plan_import(store, clinic))
    assert pack_library.plan_import(store, clinic).action == "same"
    newer = clinic.model_copy(update={"version": "2.1.0"})
    plan = pack_library.plan_import(store, newer)
    assert plan.action == "upgrade" and not plan.needs_confirmation
    pack_library.apply_import(store, plan)
    assert store.get_pack("clinic").version == "2.1.0"
    assert pack_library.get(store, "clinic").trust is Trust.UNSIGNED
    assert pack_library.install_builtins(store) == []
    older = clinic.model_copy(update={"version": "2.0.0-rc.1"})
    assert pack_library.plan_import(store, older).action == "downgrade"
    assert (
        packs.version_key("1.0.0-rc.1") < packs.version_key("1.0.0") < packs.version_key("1.0.10")
    )


# -- bad input ------------------------------------------------------------------------------


def test_malformed_toml_names_the_line(tmp_path: Path) -> None:
    (msg,) = problems(MINIMAL + 'broken = "no end\n', tmp_path)
    assert msg.startswith("pack.toml line 10: not valid TOML: ") and "column 17" in msg


def test_unknown_field_names_field_and_line(tmp_path: Path) -> None:
    (msg,) = problems(MINIMAL + 'colour = "red"\n', tmp_path)
    assert msg == "pack.toml line 10: colour: unknown field"
    text = MINIMAL + '\n[[templates]]\nid = "t"\ntitle = "T"\nprompt = "x"\nsize = 3\n'
    (msg,) = problems(text, tmp_path)
    assert msg == "pack.toml line 15: templates[0].size: unknown field"


def test_a_problem_quoting_the_pack_is_one_line(tmp_path: Path) -> None:
    """A message that quotes the pack (a rule's pattern that does not compile, with a newline
    in it) is still one line per problem (found by test_fuzz_hostile)."""
    rule = (
        '\n[[safety]]\nid = "r"\ndescription = "d"\naction = "respond"\n'
        'any = [")\\n"]\nmessage = "m"\npositive = ["a"]\nnegative = ["b"]\n'
    )
    found = problems(MINIMAL + rule, tmp_path)
    assert found and all("\n" not in msg for msg in found), found
    assert any("safety[0]" in msg for msg in found), found


def test_wrong_type_and_missing_field(tmp_path: Path) -> None:
    (msg,) = problems(MINIMAL.replace('version = "1.2.0"', "version = 3"), tmp_path)
    assert msg.startswith("pack.toml line 3: version: ") and "string" in msg
    (msg,) = problems(MINIMAL.replace('system_prompt = "You help."\n', ""), tmp_path)
    assert msg == "pack.toml: system_prompt: Field required"
    msg = problems(MINIMAL + "[sampling]\ntemperature = 9\n", tmp_path)[0]
    assert msg.startswith("pack.toml line 11: sampling.temperature: ") and "2" in msg
    msg = problems(MINIMAL.replace('"1.2.0"', '"1.2"'), tmp_path)[0]
    assert msg.startswith("pack.toml line 3: version: String should match pattern")


def test_oversized_pack(tmp_path: Path) -> None:
    big = MINIMAL + f'description2 = "{"x" * (packs.MAX_PACK_BYTES + 10)}"\n'
    (msg,) = problems(big, tmp_path)
    assert msg == "pack.toml: larger than 1000 KB"


def test_invalid_regex_and_rules_that_fail_their_examples(tmp_path: Path) -> None:
    bad = MINIMAL + RULE.format(pattern="chest (pain", positive="chest pain")
    (msg,) = problems(bad, tmp_path)
    assert (
        msg.startswith("pack.toml line 15: safety[0].any: pattern 1") and "RE2 cannot run it" in msg
    )
    weak = MINIMAL + RULE.format(pattern=" chest pain ", positive="my head hurts")
    (msg,) = problems(weak, tmp_path)
    assert "positive example does not fire: 'my head hurts'" in msg


def test_template_with_undefined_variable(tmp_path: Path) -> None:
    text = MINIMAL + (
        '\n[[templates]]\nid = "lab"\ntitle = "Lab"\nprompt = "Explain {test} at {value}"\n'
        '  [[templates.variables]]\n  name = "test"\n  label = "Test"\n'
    )
    (msg,) = problems(text, tmp_path)
    assert msg == "pack.toml line 11: templates[0]: prompt uses undefined variable {value}"
    sneaky = text.replace("{value}", "{test.__class__}")
    assert "plain variable name" in problems(sneaky, tmp_path)[0]


@pytest.mark.parametrize("target", ["../secret.md", "/etc/hostname", "refs/link.md", "refs/x.py"])
def test_path_traversal_in_folder_pack(tmp_path: Path, target: str) -> None:
    outside = tmp_path / "secret.md"
    outside.write_text("outside the pack")
    folder = tmp_path / "pack"
    (folder / "refs").mkdir(parents=True)
    os.symlink(outside, folder / "refs" / "link.md")
    (folder / "refs" / "x.py").write_text("print()")
    (folder / "pack.toml").write_text(
        MINIMAL + f'\n[[references]]\nid = "r"\ntitle = "R"\nsource = "S"\nfile = "{target}"\n'
    )
    with pytest.raises(PackError) as info:
        packs.load(folder)
    msg = info.value.problems[0]
    assert msg.startswith("pack.toml line 15: references[0].file: "), msg
    assert re.search("inside the pack folder|outside the pack folder|not a Markdown", msg)


def test_every_problem_is_listed(tmp_path: Path) -> None:
    text = MINIMAL.replace('id = "demo"', 'id = "Demo Pack"') + "min_context = 1\nextra = 1\n"
    found = problems(text, tmp_path)
    assert len(found) == 3
    assert [p.split(": ")[1] for p in found] == ["id", "min_context", "extra"]


def test_json_schema_rejects_what_the_model_rejects() -> None:
    schema = json.loads(SCHEMA_PATH.read_text())
    assert schema["additionalProperties"] is False
    assert "system_prompt" in schema["required"]
    assert schema["$defs"]["SafetyRule"]["additionalProperties"] is False


def test_template_sources_come_from_its_values() -> None:
    """A template's own wording does not choose the sources: its values do."""
    store = memory_store()
    pack_library.install_builtins(store)
    medical = packs.builtin("medical")
    text = medical.template("term").render({"term": "INR"})
    by_text = turn.check_question(store, medical, text, words)
    by_values = turn.check_question(store, medical, text, words, lookup="INR")
    refs = [s.ref_id for s in by_values.meta.sources]
    assert refs[0] == "warfarin"
    assert by_text.meta.sources != by_values.meta.sources
