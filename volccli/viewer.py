"""`--open`: hand the written images to the system's viewer, and let go of it.

The viewer is started in its own session with no stdin, stdout or stderr of ours: its
messages must not land among the paths or JSON Lines a script reads from stdout, and
`volccli … --open | jq` must not wait for the window to close. Nothing waits for it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path


def viewer_command() -> list[str] | None:
    """The command that opens one file in the desktop's viewer here, or None."""
    if sys.platform == "darwin":
        return ["open"]
    for name in ("xdg-open", "gio"):
        found = shutil.which(name)
        if found:
            return [found, "open"] if name == "gio" else [found]
    return None


def open_images(paths: Sequence[Path]) -> str | None:
    """Start the viewer on each image; a note to show when there is none, else None."""
    if sys.platform == "win32":
        for path in paths:
            os.startfile(path)  # type: ignore[attr-defined]  # Windows only
        return None
    command = viewer_command()
    if command is None:
        return (
            "note: --open found no image viewer (xdg-open is not installed); the images are written"
        )
    for path in paths:
        try:
            subprocess.Popen(
                [*command, str(path)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError as exc:
            name = Path(command[0]).name
            return f"note: --open could not start {name} ({exc.strerror}); the images are written"
    return None
