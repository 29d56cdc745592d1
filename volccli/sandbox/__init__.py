"""A faithful local emulator of the Volcengine visual API, for tests, demos and CI.

Both URL styles (a relay's ``/volcv/v1`` with a Bearer key, the official ``/`` with a V4
signature), the five documented request kinds' validation, sync and async actions,
deterministic PNG results of the right size, and fault injection. Imported lazily by the
CLI: it pulls in Pillow.
"""

from __future__ import annotations

from typing import Any

from .config import ACCESS_KEY, API_KEY, SECRET_KEY, SESSION_TOKEN, SandboxConfig


def __getattr__(name: str) -> Any:
    # The server (and Pillow behind it) loads on first use, so the CLI can read the
    # settings table without paying for them.
    if name == "Sandbox":
        from .server import Sandbox

        return Sandbox
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ACCESS_KEY",
    "API_KEY",
    "SECRET_KEY",
    "SESSION_TOKEN",
    "Sandbox",
    "SandboxConfig",
]
