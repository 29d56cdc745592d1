"""A faithful local emulator of the Volcengine visual API, for tests, demos and CI.

Both URL styles (a relay's ``/volcv/v1`` with a Bearer key, the official ``/`` with a V4
signature), the five documented request kinds' validation, sync and async actions,
deterministic PNG results of the right size, and fault injection. Imported lazily by the
CLI: it pulls in Pillow.
"""

from __future__ import annotations

from .config import ACCESS_KEY, API_KEY, SECRET_KEY, SESSION_TOKEN, SandboxConfig
from .server import Sandbox

__all__ = [
    "ACCESS_KEY",
    "API_KEY",
    "SECRET_KEY",
    "SESSION_TOKEN",
    "Sandbox",
    "SandboxConfig",
]
