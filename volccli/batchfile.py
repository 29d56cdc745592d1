"""Reading a batch file: JSON Lines or CSV rows, each with the line it starts on.

Nothing here knows what a row means (that is jobs.py); this only turns text into
``Row``s and says, per line, what could not be read. Problems are collected rather than
raised, so every bad line of a file is reported in one go.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from .errors import InputError
from .jsonkind import json_kind

Format = Literal["jsonl", "csv"]
FORMATS: Final = ("jsonl", "csv")
_EXTENSIONS: Final[dict[str, Format]] = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".csv": "csv",
    ".tsv": "csv",
}
# What separates a CSV's columns: comma, tab (TSV), or semicolon (what spreadsheets
# write in locales whose decimal mark is a comma).
_DELIMITERS: Final = (",", "\t", ";")


@dataclass
class Row:
    line: int  # 1-based line the row starts on
    values: dict[str, Any]
    text: bool  # CSV: every value is a string still to be typed


@dataclass
class Problem:
    line: int
    message: str
    # Other rows the problem makes invalid too (rows that would write one file): the
    # message names them, and none of them is sent.
    also: tuple[int, ...] = ()


@dataclass
class BatchFile:
    label: str  # how messages name the file: the path as given, or <stdin>
    base_dir: Path  # relative image paths start here
    rows: list[Row]
    problems: list[Problem]
    # Which batch this is, for the journal: a file by its resolved path (editing a row
    # and running again resumes), stdin by its content (stdin has no other name).
    identity: str = ""


class _RowProblem(Exception):
    """Raised inside the JSON parser for a value that parses but must not be read."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.loads would keep the last of two equal keys and drop the other in silence.
    row: dict[str, Any] = {}
    for key, value in pairs:
        if key in row:
            raise _RowProblem(f"the key {key!r} appears twice in one object (only one can count)")
        row[key] = value
    return row


def _constant(name: str) -> Any:
    # json.loads reads NaN and Infinity, which no JSON encoder (nor the API) accepts.
    raise _RowProblem(f"{name} is not a JSON number; give a finite number")


_DECODER: Final = json.JSONDecoder(object_pairs_hook=_object, parse_constant=_constant)
_LENIENT: Final = json.JSONDecoder()  # only to find where a refused value ends


class CsvError(Exception):
    """A CSV none of whose rows can be trusted: its quoting is broken (where its rows end
    is unknown), or its header does not name each column once."""

    def __init__(self, line: int, message: str, hint: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message
        self.hint = hint


def read_batch(source: str, fmt: str | None, read_stdin: Callable[[], bytes]) -> BatchFile:
    """Read and split a batch file ('-' is stdin); raise only when it cannot be read at all."""
    if fmt is not None and fmt not in FORMATS:
        raise InputError(f"--format {fmt!r} is not jsonl or csv", "use --format jsonl or csv")
    if source == "-":
        raw, label, base = read_stdin(), "<stdin>", Path.cwd()
        identity = f"<stdin> sha256:{hashlib.sha256(raw).hexdigest()}"
    else:
        path = Path(source).expanduser()
        label, base = source, path.resolve().parent
        identity = str(path.resolve())
        try:
            raw = path.read_bytes()
        except IsADirectoryError:
            raise InputError(f"{source} is a folder", "give a .jsonl or .csv file") from None
        except OSError as exc:
            raise InputError(
                f"cannot read the batch file {source} ({exc.strerror})", "check the path"
            ) from None
        fmt = fmt or _EXTENSIONS.get(path.suffix.lower())
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(
            f"{label} is not UTF-8 text", "save it as UTF-8 (iconv -t UTF-8)"
        ) from None
    if fmt is None:  # stdin or an unknown extension: JSON starts with an object or array
        fmt = "jsonl" if text.lstrip().startswith(("{", "[")) else "csv"
    try:
        rows, problems = (_jsonl if fmt == "jsonl" else _csv)(text)
    except CsvError as error:
        raise InputError(
            f"{label}:{error.line}: {error.message}; nothing was sent", error.hint
        ) from None
    if not rows and not problems:
        raise InputError(
            f"{label} has no jobs",
            'add one job per line, e.g. {"command": "txt2img", "prompt": "a red fox"}',
        )
    return BatchFile(label, base, rows, problems, identity)


def _jsonl(text: str) -> tuple[list[Row], list[Problem]]:
    """One object per line (``#`` lines are comments), or else one JSON document.

    A file that is not line-delimited but is valid JSON as a whole is read too: an array
    of objects (``[{…}, {…}]``), or objects spread over several lines each. When neither
    reading works, the line-by-line problems are the ones reported.
    """
    rows, problems = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            value = _DECODER.decode(stripped)
        except _RowProblem as problem:
            try:  # a line that is not JSON at all says so, whatever came first
                _LENIENT.decode(stripped)
            except ValueError as exc:
                problems.append(Problem(number, f"not JSON ({exc})"))
            else:
                problems.append(Problem(number, problem.message))
            continue
        except ValueError as exc:
            problems.append(Problem(number, f"not JSON ({exc})"))
            continue
        _add(rows, problems, number, value)
    if problems:
        whole = _json_document(text)
        if whole is not None:
            return whole
    return rows, problems


def _add(rows: list[Row], problems: list[Problem], line: int, value: Any) -> None:
    if isinstance(value, dict):
        problem = _not_text_in(value)
        if problem is not None:
            problems.append(Problem(line, problem))
            return
        rows.append(Row(line, value, text=False))
        return
    problems.append(
        Problem(
            line,
            f'{json_kind(value)}, not a JSON object like {{"command": "txt2img", "prompt": "…"}}',
        )
    )


def _not_text_in(row: dict[str, Any]) -> str | None:
    """The first key or value of a JSON row with a lone UTF-16 surrogate, as a message.

    JSON's \\ud800 escape reads as one. Found here, every such string is refused with
    its field before anything is made or sent: a file or folder name with one cannot be
    opened or created, a --name would drop it in silence, and a body cannot carry it.
    (A CSV is read from UTF-8 text, which cannot hold one.)
    """
    from .payload import json_problem  # the client's own check, in its wording

    for key, value in row.items():
        error = json_problem(key, f"the key {key!r}") or json_problem(value, key)
        if error is not None:
            return f"{error.message}; {error.hint}"
    return None


def _json_document(text: str) -> tuple[list[Row], list[Problem]] | None:
    """The rows of an array of objects or of a stream of JSON values; None if not JSON."""
    rows: list[Row] = []
    problems: list[Problem] = []
    end = len(text)

    def skip(pos: int) -> int:
        while pos < end and text[pos].isspace():
            pos += 1
        return pos

    def line_of(pos: int) -> int:
        return text.count("\n", 0, pos) + 1

    pos = skip(0)
    in_array = pos < end and text[pos] == "["
    if in_array:
        pos = skip(pos + 1)
        if pos < end and text[pos] == "]" and skip(pos + 1) == end:
            return rows, problems  # [] : no jobs
    try:
        while pos < end:
            try:
                value, after = _DECODER.raw_decode(text, pos)
            except _RowProblem as problem:
                # A readable value with a refused part: report it, go on after it.
                problems.append(Problem(line_of(pos), problem.message))
                after = _LENIENT.raw_decode(text, pos)[1]
            else:
                _add(rows, problems, line_of(pos), value)
            pos = skip(after)
            if in_array:
                if pos < end and text[pos] == ",":
                    pos = skip(pos + 1)
                    continue
                if pos < end and text[pos] == "]" and skip(pos + 1) == end:
                    return rows, problems
                raise json.JSONDecodeError("expected ',' or the closing ']'", text, pos)
    except json.JSONDecodeError as exc:
        if not in_array:  # perhaps JSON Lines with a bad line: those problems say more
            return None
        where = f"line {exc.lineno} column {exc.colno}"
        return [], [Problem(exc.lineno, f"not a JSON array of objects ({exc.msg} at {where})")]
    return None if in_array else (rows, problems)


def _delimiter(text: str) -> str:
    """The separator the header line uses most (column names never contain one)."""
    header = next((line for line in text.splitlines() if line.strip()), "")
    counts = {delimiter: header.count(delimiter) for delimiter in _DELIMITERS}
    return max(_DELIMITERS, key=lambda delimiter: counts[delimiter])  # a tie: comma


def _csv(text: str) -> tuple[list[Row], list[Problem]]:
    # strict: an unclosed quote is an error instead of swallowing the rest of the file
    # into one value, and so is text after a closing quote ("a"b).
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(text), strict=True)
    rows: list[Row] = []
    problems: list[Problem] = []
    header: list[str] | None = None
    while True:
        start = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise _csv_error(start, reader.line_num, str(exc)) from None
        if not any(cell.strip() for cell in cells):
            continue
        if header is None:
            header = [cell.strip() for cell in cells]
            _check_header(header, start)
            continue
        if len(cells) > len(header):
            problems.append(
                Problem(start, f"{len(cells)} values but the header has {len(header)} columns")
            )
            continue
        values = {
            name: cell for name, cell in zip(header, cells, strict=False) if cell.strip() != ""
        }
        rows.append(Row(start, values, text=True))
    return rows, problems


def _check_header(header: list[str], line: int) -> None:
    """A header that does not name each column once makes every row unreadable: the file
    is refused as a whole (as broken quoting is), with no row to send by --keep-going."""
    blank = [n for n, name in enumerate(header, start=1) if not name]
    if blank:
        raise CsvError(
            line,
            f"column {blank[0]} of the header has no name",
            "name every column in the first line, or remove the empty one "
            "(a separator at the end of the line makes one)",
        )
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise CsvError(
            line,
            f"the header repeats {', '.join(repeated)} (a row would give it twice)",
            "name each column once in the first line",
        )


def _csv_error(start: int, line: int, detail: str) -> CsvError:
    if detail == "unexpected end of data":
        return CsvError(
            start,
            "a quote opened in this row is never closed (the rest of the file would be one value)",
            'close the quote; write a quote inside a quoted value as ""',
        )
    return CsvError(
        line,
        f"malformed CSV ({detail})",
        'quote a value that holds the separator or a quote, and write a quote inside it as ""',
    )
