"""How a message names the type of a JSON value, without showing the value itself
(which may be a secret, or a whole file)."""

from __future__ import annotations


def json_kind(value: object) -> str:
    """'null', 'true/false', 'a number', 'text', 'a list' or 'an object'."""
    if value is None:
        return "null"
    if isinstance(value, bool):  # before int: True is an int to Python
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    return "an object"
