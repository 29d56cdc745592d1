"""`history --search` matches the text as typed, and `history -n` takes any size.

The JSON columns are searched in their decoded values: `%`, `_`, a quote or a colon match
rows that hold one, not every row. A search too long to mean anything is a usage error
that names --search and never blames the history file.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from tests.helpers_pipelines import box, volccli
from volccli import history
from volccli.history import SEARCH_MAX, db_path, query
from volccli.sandbox import Sandbox

__all__ = ["box"]

PROMPTS = [
    "100% cotton shirt",
    "snake_case words",
    'she said "hello"',
    "back\\slash path",
    "colon: here",
    "a {curly} thing",
    "plain heron",
    "Crane AT dusk",
    "一只鹭 at dawn",
    "tab\there",
]


def fill(path: Path, prompts: list[str] = PROMPTS) -> None:
    start = datetime(2025, 1, 1, tzinfo=timezone.utc)
    for n, prompt in enumerate(prompts):
        history.write(
            path,
            {
                "time": (start + timedelta(minutes=n)).isoformat(),
                "command": "txt2img",
                "req_key": "high_aes_general_v14",
                "prompt": prompt,
                "params": {"prompt": prompt, "scale": 3.5, "use_rephraser": True, "seed": n},
                "outcome": "ok",
                "outputs": [{"path": f"/out/image_{n}.png", "sha256": f"{n:064x}"}],
                "retry_reasons": [],
            },
        )


def prompts_for(path: Path, search: str) -> set[str]:
    return {row["prompt"] for row in query(path, limit=0, search=search)}


def brute_force(search: str) -> set[str]:
    """What the search should find, worked out in Python from the decoded rows."""
    needle = search.lower()
    found = set()
    for n, prompt in enumerate(PROMPTS):
        values = [
            prompt,
            "txt2img",
            "high_aes_general_v14",
            "3.5",
            "true",
            str(n),
            f"/out/image_{n}.png",
            f"{n:064x}",
        ]
        if any(needle in value.lower() for value in values):
            found.add(prompt)
    return found


@pytest.mark.parametrize(
    ("search", "expected"),
    [
        ("%", {"100% cotton shirt"}),
        ("_", set(PROMPTS)),  # every row: its req_key and its path hold one
        ("e_c", {"snake_case words"}),
        ("t_n", set()),  # as a LIKE pattern it would match "cotton"
        ("0%_", set()),
        ('"', {'she said "hello"'}),
        ("\\", {"back\\slash path"}),
        (":", {"colon: here"}),
        ("{", {"a {curly} thing"}),
        ('"prompt"', set()),  # a parameter's name is not searched, nor the JSON around it
        ("scale", set()),
        ("\t", {"tab\there"}),
        ("HERON", {"plain heron"}),
        ("crane at", {"Crane AT dusk"}),
        ("鹭", {"一只鹭 at dawn"}),
        ("/out/image_3.png", {"back\\slash path"}),
        ("3.5", set(PROMPTS)),
    ],
)
def test_search_matches_the_literal_text_in_values(
    tmp_path: Path, search: str, expected: set[str]
) -> None:
    path = tmp_path / "history.db"
    fill(path)
    assert prompts_for(path, search) == expected == brute_force(search)


def test_search_agrees_with_a_plain_scan_for_every_piece_of_every_value(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    fill(path)
    pieces = {"", "x", "é", "\\\\", '\\"', "\\u0009", "true,", "/", "0" * 64}
    for prompt in PROMPTS:
        for size in (1, 2, 3):
            pieces |= {prompt[at : at + size] for at in range(len(prompt))}
            pieces |= {prompt[at : at + size].upper() for at in range(len(prompt))}
    for piece in sorted(pieces - {""}):
        assert prompts_for(path, piece) == brute_force(piece), piece


def test_a_row_whose_json_does_not_decode_is_searched_as_text(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    fill(path, ["kept"])
    with history.connect(path) as conn, conn:
        conn.execute("UPDATE requests SET params = ?", ("not json: Marker",))
    assert prompts_for(path, "marker") == {"kept"}
    assert prompts_for(path, "absent") == set()


def test_history_search_on_the_command_line(
    box: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for prompt in ("100% wool", "plain linen", 'the "best" silk'):
        assert volccli(capsys, ["txt2img", prompt, "-o", str(tmp_path)]).code == 0
    for search, expected in (("%", ["100% wool"]), ('"', ['the "best" silk']), (":", [])):
        run = volccli(capsys, ["history", "--search", search, "--json"])
        assert run.code == 0, run.err
        assert [row["prompt"] for row in run.records] == expected
    help_text = volccli(capsys, ["history", "--help"]).out
    assert "no wildcards" in help_text and "A-Z is ignored" in help_text


def test_a_search_too_long_is_a_usage_error_that_leaves_the_history_alone(
    box: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert volccli(capsys, ["txt2img", "one row", "-o", str(tmp_path)]).code == 0
    before = db_path().read_bytes()
    run = volccli(capsys, ["history", "--search", "a" * 100_000])
    assert run.code == 2 and run.out == ""
    assert run.err.strip().count("\n") == 0
    assert "--search is 100,000 characters long" in run.err
    assert "history.db" not in run.err and "move it away" not in run.err
    assert db_path().read_bytes() == before
    at_most = volccli(capsys, ["history", "--search", "o" * SEARCH_MAX])
    assert at_most.code == 0 and "no matching requests" in at_most.err


def test_a_search_that_is_not_utf8_is_refused(
    box: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert volccli(capsys, ["txt2img", "caf\u00e9", "-o", str(tmp_path)]).code == 0
    run = volccli(capsys, ["history", "--search", "caf\udce9"])  # argv bytes b"caf\xe9"
    assert run.code == 2 and "'caf\\xe9' is not valid UTF-8" in run.err


@pytest.mark.parametrize("limit", ["99999999999999999999999", str(2**63), str(2**63 - 1)])
def test_any_large_limit_means_every_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, limit: str
) -> None:
    monkeypatch.setenv("VOLCCLI_DATA_DIR", str(tmp_path))
    fill(tmp_path / "history.db")
    run = volccli(capsys, ["history", "-n", limit, "--json"])
    assert run.code == 0, run.err
    rows: list[dict[str, Any]] = run.records
    assert [row["prompt"] for row in rows] == PROMPTS[::-1]
    assert len(query(tmp_path / "history.db", limit=int(limit))) == len(PROMPTS)
