"""Shared fixtures: an isolated environment for every test and one sandbox per session."""

from __future__ import annotations

import os
import socket
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


_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
_real_getaddrinfo = socket.getaddrinfo
reached_out: list[str] = []  # every other host a test tried to look up


def _loopback_only(host: object, *args: object, **kwargs: object) -> object:
    """Tests reach 127.0.0.0/8 only: another name fails as it would with no network
    (and is noted), so no test can reach the real API even on a machine that could."""
    name = host.decode() if isinstance(host, bytes) else str(host)
    if name not in _LOOPBACK_NAMES and not name.startswith("127."):
        reached_out.append(name)
        raise socket.gaierror(socket.EAI_NONAME, f"{name}: tests reach loopback only")
    return _real_getaddrinfo(host, *args, **kwargs)  # type: ignore[arg-type]


socket.getaddrinfo = _loopback_only  # type: ignore[assignment]


@pytest.fixture(autouse=True)
def loopback_only() -> Iterator[None]:
    """A test that tried to reach another host fails, even though the lookup failed."""
    before = len(reached_out)
    yield
    tried = sorted(set(reached_out[before:]))
    assert not tried, f"the test tried to reach {tried}; point it at 127.0.0.1"


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
