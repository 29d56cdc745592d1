"""Reading request JSON the way the service's decoder does, and text that always encodes.

Every body, ``req_json`` string and control request goes through ``loads``, so what the
sandbox holds afterwards is safe to hash, draw, record and answer with:

- Bytes must be UTF-8 (or UTF-16/32 with the JSON encoding detection); anything else is
  not JSON. Python's own decoder would let UTF-8-encoded surrogates through.
- A ``\\u`` escape of a lone surrogate ("\\ud800") becomes U+FFFD, as Go's encoding/json
  does when it decodes a string (a Java service keeps it and writes "?" when it encodes):
  the request goes on with the replacement character, it is not refused.
- ``NaN``, ``Infinity`` and numbers beyond a float64 are refused: neither Go nor Jackson
  decodes them.
- Nesting deeper than ``MAX_DEPTH`` is refused. The service's decoders allow more (Go
  10000, Jackson 1000 levels), but no request nests beyond four, and the sandbox's own
  recursive code (validation, stats) must stay far from Python's recursion limit.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Final

MAX_DEPTH: Final = 200
REPLACEMENT: Final = "\ufffd"
_SURROGATE: Final = re.compile("[\ud800-\udfff]")


class NotJson(ValueError):
    """A body the service's JSON decoder would refuse."""


def loads(raw: bytes | str) -> Any:
    """The JSON value of ``raw``; NotJson for anything the service could not decode."""
    if isinstance(raw, str):
        text = raw
    else:
        try:
            text = raw.decode(json.detect_encoding(raw))
        except (UnicodeDecodeError, LookupError):
            raise NotJson("the body is not UTF-8 text") from None
    try:
        value = json.loads(
            text, parse_constant=_refuse_constant, parse_float=_float, parse_int=_int
        )
    except RecursionError:
        raise NotJson("the JSON is nested too deeply") from None
    except ValueError as exc:
        raise NotJson(str(exc)) from None
    # Cheap tests first: a body with few brackets cannot be deep, and without a \u escape
    # (or a str handed in) it cannot hold a surrogate. Most bodies skip the walk.
    deep = text.count("[") + text.count("{") > MAX_DEPTH
    odd_text = "\\u" in text or (isinstance(raw, str) and _SURROGATE.search(text) is not None)
    if deep or odd_text:
        value = _settle(value)
    return value


def clean_text(text: str) -> str:
    """``text`` with every lone surrogate replaced by U+FFFD, so it encodes as UTF-8."""
    return _SURROGATE.sub(REPLACEMENT, text) if _SURROGATE.search(text) else text


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _float(text: str) -> float:
    number = float(text)
    if math.isinf(number):
        raise ValueError(f"{text} is beyond the range of a float64")
    return number


def _int(text: str) -> int:
    number = int(text)
    try:
        float(number)
    except OverflowError:
        raise ValueError("an integer is beyond the range of a float64") from None
    return number


def _settle(value: Any) -> Any:
    """Check the depth and clean every string, keys included, without recursion."""
    if isinstance(value, str):
        return clean_text(value)
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise NotJson(f"the JSON is nested more than {MAX_DEPTH} levels deep")
        if isinstance(node, dict):
            if any(_SURROGATE.search(key) for key in node):
                items = list(node.items())
                node.clear()
                # Two keys that differ only in their surrogates become one; the later
                # wins, as a repeated key does.
                node.update((clean_text(key), item) for key, item in items)
            for key, item in node.items():
                if isinstance(item, str):
                    node[key] = clean_text(item)
                elif isinstance(item, (dict, list)):
                    stack.append((item, depth + 1))
        elif isinstance(node, list):
            for index, item in enumerate(node):
                if isinstance(item, str):
                    node[index] = clean_text(item)
                elif isinstance(item, (dict, list)):
                    stack.append((item, depth + 1))
    return value
