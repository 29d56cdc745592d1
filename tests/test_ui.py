"""Messages on stderr: plain lines when stderr is not a terminal, user text as typed."""

from __future__ import annotations

import subprocess
import sys

import pytest

from volccli.ui import UI

_SCRIPT = """
import sys
from volccli.cli import main
try:
    main(["txt2img", "x", "--on-exists", ":fox:"])
except SystemExit as done:
    print(done.code, "rich" in sys.modules)
"""


def test_a_message_off_a_terminal_leaves_rich_unimported_and_text_as_typed() -> None:
    run = subprocess.run(
        [sys.executable, "-c", _SCRIPT], capture_output=True, text=True, timeout=60
    )
    assert run.stdout.split() == ["2", "False"], run.stderr
    assert "--on-exists ':fox:' is not one of" in run.stderr  # no emoji put in its place


def test_messages_are_whole_lines_in_order(capsys: pytest.CaptureFixture[str]) -> None:
    ui = UI()
    ui.note("note :fox:")
    ui.warn("careful")
    ui.plain("plain")
    err = capsys.readouterr().err
    assert err == "note :fox:\nvolccli: warning: careful\nplain\n"
