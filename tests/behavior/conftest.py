"""Fixtures for the behaviour tests: a jail per test, and skip-free sandbox requirements."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from tripwire.behavior.sandbox import BwrapSandboxEnvironment


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.fixture
def jail() -> Iterator[BwrapSandboxEnvironment]:
    if shutil.which("bwrap") is None:
        pytest.fail("bubblewrap is required for the behaviour tests: apt-get install bubblewrap")
    env = BwrapSandboxEnvironment.create()
    try:
        yield env
    finally:
        env.cleanup()
