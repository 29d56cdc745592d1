"""Shared fixtures: an isolated environment for every test and one sandbox per session."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from volccli.sandbox import Sandbox, SandboxConfig

# Variables that would let a developer's own credentials or settings leak into a test.
_ISOLATED_PREFIXES = ("VOLCCLI_", "VOLC_", "VOLCENGINE_", "GITHUB_STEP_SUMMARY", "NO_COLOR")


@pytest.fixture(autouse=True)
def isolated_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point config, data and home at temporary folders and drop inherited credentials."""
    for name in list(os.environ):
        if name.startswith(_ISOLATED_PREFIXES):
            monkeypatch.delenv(name, raising=False)
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("VOLCCLI_CONFIG_DIR", str(home / "config"))
    monkeypatch.setenv("VOLCCLI_DATA_DIR", str(home / "data"))
    # Temp files the code leaves on purpose (--print-curl's body file) stay in the test's
    # own folder instead of piling up in the machine's /tmp.
    monkeypatch.setenv("TMPDIR", str(tmp_path_factory.mktemp("tmp")))
    monkeypatch.setattr(tempfile, "tempdir", None)
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.delenv("CI", raising=False)
    return home


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Sandbox]:
    """One emulator on an ephemeral loopback port for the whole session."""
    server = Sandbox(SandboxConfig(host="127.0.0.1", port=0))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fresh_sandbox(sandbox: Sandbox) -> Sandbox:
    """The session sandbox with its counters, tasks and fault settings reset."""
    sandbox.reset()
    return sandbox
