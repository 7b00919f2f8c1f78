"""Fixtures for the behaviour tests: a jail per test, and skip-free sandbox requirements."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from tripwire.behavior.sandbox import BwrapSandboxEnvironment


@pytest.fixture
def jail() -> Iterator[BwrapSandboxEnvironment]:
    if shutil.which("bwrap") is None:
        pytest.fail("bubblewrap is required for the behaviour tests: apt-get install bubblewrap")
    env = BwrapSandboxEnvironment.create()
    try:
        yield env
    finally:
        env.cleanup()
