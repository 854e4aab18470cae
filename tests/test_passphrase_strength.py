"""Passphrase feedback from zxcvbn: honest scores, crack times, refusal of weak ones."""

from __future__ import annotations

import pytest

from bastion.app.cli import main
from bastion.app.secrets_input import PassphraseError, check_strength, strength


@pytest.fixture(autouse=True)
def _environment_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests run several CLI commands in one process, each reading the passphrase from
    the environment; a real command runs once per process and removes it (tested in
    test_hostile.py), so the removal is left out here."""
    from bastion.app import secrets_input

    monkeypatch.setattr(secrets_input, "scrub_environment", lambda name: None)


def test_repeated_words_are_not_strong() -> None:
    """The issue's example scored "strong" with the old heuristic; zxcvbn sees the repeat."""
    verdict = strength("passwordpasswordpassword1234")
    assert verdict.score < 2 and not verdict.acceptable
    assert verdict.label in ("very weak", "weak")
    assert verdict.warning or verdict.suggestions


@pytest.mark.parametrize(
    "weak",
    ["password1", "qwertyuiop", "P@ssw0rd", "12345678901234", "aaaaaaaaaaaaaaaa", "iloveyou2024"],
)
def test_common_patterns_are_weak(weak: str) -> None:
    """Dictionary words, keyboard rows, repeats, dates and l33t are recognised."""
    assert strength(weak).score < 3


@pytest.mark.parametrize(
    "good", ["correct horse battery staple", "violet tractor anthem pebble", "x8#Qm!2vZ@p9Lw"]
)
def test_random_words_and_random_characters_pass(good: str) -> None:
    """Several random words, or random characters, score 3 or more."""
    verdict = strength(good)
    assert verdict.score >= 3 and verdict.acceptable
    assert verdict.crack_time  # e.g. "centuries"


def test_describe_has_verdict_crack_time_and_advice() -> None:
    """The one-line description names the verdict, the crack time and zxcvbn's advice."""
    text = strength("passwordpasswordpassword1234").describe()
    assert "cracked in" in text and ";" in text


def test_weak_refused_unless_insisting() -> None:
    """check_strength refuses a score below 2 unless the user insists."""
    with pytest.raises(PassphraseError, match=r"too weak.*--weak-passphrase"):
        check_strength("letmein123")
    assert check_strength("letmein123", allow_weak=True).score < 2


def test_init_refuses_weak_passphrase(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`bastion init` with a weak passphrase: one line, nothing created; --weak-passphrase
    creates it with a warning."""
    from bastion.app import paths

    monkeypatch.setenv("BASTION_PASSPHRASE", "passwordpasswordpassword1234")
    fast = ["--kdf-memory-mib", "8", "--kdf-passes", "1"]
    assert main(["init", *fast]) == 1
    err = capsys.readouterr().err
    assert "too weak" in err and len(err.strip().splitlines()) == 1
    assert not paths.vault_started()
    assert main(["init", *fast, "--weak-passphrase"]) == 0
    assert "weak passphrase kept" in capsys.readouterr().err
    assert paths.vault_exists()
