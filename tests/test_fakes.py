"""The fake engine (bench/ui.py, UI mechanics) keeps the real engine's call signature, so a
change to the engine cannot silently break what is measured with the fake."""

from __future__ import annotations

import inspect

from bastion.models.engine import Engine
from tests.fakes import FakeEngine


def test_fake_engine_chat_takes_the_real_engines_arguments() -> None:
    real = inspect.signature(Engine.chat).parameters
    fake = inspect.signature(FakeEngine.chat).parameters
    assert list(fake) == list(real)
    assert [p.kind for p in fake.values()] == [p.kind for p in real.values()]
