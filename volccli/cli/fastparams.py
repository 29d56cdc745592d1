"""Cheap coercion of plain option values, so that most runs never import pydantic.

Typer coerces every parameter that is not a boolean flag through a pydantic TypeAdapter
built on first use, including parameters that were not given at all (value None).
Importing pydantic and building those adapters costs about 100 ms and 13 MB on every
run of a generation command, more than the request itself against a nearby server.

``install`` gives each parameter a coercer that answers the values needing no real
conversion exactly as Typer's adapters do: None, a ``str`` for a str parameter, a plain
integer or decimal literal for an int or float parameter (within its bounds), and lists
of those. Anything else (choices, paths, custom parsers, out-of-range or unusual
numbers) goes to Typer's own coercion, built only then, so its checks and messages are
unchanged. tests/test_fastparams.py compares both on generated values.

Typer before 0.29 coerces through Click-style types with no pydantic, so there is nothing
to speed up: ``install`` then leaves every parameter as it is (see ``_real_builder``).
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Iterable
from typing import Any, get_args, get_origin

# Literals that int() / float() read exactly as pydantic's lax mode does; length-capped
# so int() never meets its digit limit and every integer fits pydantic's native i64.
# Compiled by re on first use (and cached there), not on every start.
_INT = r"[+-]?[0-9]{1,18}"
_FLOAT = r"[+-]?(?:[0-9]{1,30}\.?[0-9]{0,30}|\.[0-9]{1,30})(?:[eE][+-]?[0-9]{1,3})?"


class _Declined:
    """Marks a value the fast path leaves to Typer."""


DECLINED: Any = _Declined()


def quick_value(descriptor: Any, value: Any, *, multi: bool) -> Any:
    """The coerced value, or DECLINED when Typer's own coercion must decide."""
    if value is None:
        return () if multi else None  # what Typer's RuntimeParam.coerce returns
    info = descriptor.parameter_info
    if info.parser is not None or descriptor.file_annotation is not None:
        return DECLINED
    if descriptor.choices is not None:
        return DECLINED
    annotation = descriptor.annotation
    if multi:
        args = get_args(annotation)
        if get_origin(annotation) is not list or len(args) != 1:
            return DECLINED
        if not isinstance(value, (list, tuple)):
            return DECLINED
        items = [_leaf(args[0], info, item) for item in value]
        return DECLINED if any(item is DECLINED for item in items) else items
    return _leaf(annotation, info, value)


def _leaf(annotation: Any, info: Any, value: Any) -> Any:
    if annotation is str:
        return value if type(value) is str else DECLINED
    if annotation is int:
        if type(value) is str and re.fullmatch(_INT, value):
            number: Any = int(value)
        elif type(value) is int:
            number = value
        else:
            return DECLINED
    elif annotation is float:
        if (type(value) is str and re.fullmatch(_FLOAT, value)) or type(value) in (int, float):
            number = float(value)
        else:
            return DECLINED
        if not math.isfinite(number):
            return DECLINED
    else:
        return DECLINED
    # Bounds (and clamping) stay Typer's: only values inside them are answered here.
    if (info.min is not None and number < info.min) or (info.max is not None and number > info.max):
        return DECLINED
    return number


# What quick_value reads from Typer's type descriptor.
_DESCRIPTOR_FIELDS = ("annotation", "parameter_info", "file_annotation", "choices")


def _real_builder() -> Any:
    """Typer's ``build_runtime_param``, or None when this Typer lacks what the fast path wraps.

    The fast path leans on Typer internals (``typer._coercion``, 0.29 and later), which
    ``typer.core`` has already imported when it has them, so this imports nothing. With
    any part missing the fast path stays off and Typer coerces everything itself.
    """
    module = sys.modules.get("typer._coercion")
    build = getattr(module, "build_runtime_param", None)
    descriptor = getattr(module, "TypeDescriptor", None)
    if build is None or descriptor is None:
        return None
    fields = {*getattr(descriptor, "__dataclass_fields__", ()), *vars(descriptor)}
    return build if all(name in fields for name in _DESCRIPTOR_FIELDS) else None


class FastCoercion:
    """Stands in for Typer's runtime parameter; builds the real one only when needed."""

    def __init__(self, descriptor: Any, build: Any = None) -> None:
        self.descriptor = descriptor
        self._build = build
        self._real: Any = None

    def coerce(self, value: Any, param: Any, ctx: Any) -> Any:
        multi = bool(param.multiple or param.nargs == -1)
        if not (multi and isinstance(value, str)):  # Typer rejects that with its message
            quick = quick_value(self.descriptor, value, multi=multi)
            if quick is not DECLINED:
                return quick
        if self._real is None:
            build = self._build or _real_builder()
            self._real = build(self.descriptor)
        return self._real.coerce(value, param=param, ctx=ctx)


def install(params: Iterable[Any]) -> None:
    """Give each Typer parameter not yet coerced the fast coercer (others are left).

    Does nothing on a Typer without the pydantic coercion it stands in for.
    """
    build = _real_builder()
    if build is None:
        return
    for param in params:
        if getattr(param, "_runtime_param", False) is None and hasattr(param, "type_descriptor"):
            param._runtime_param = FastCoercion(param.type_descriptor, build)


def install_tree(command: Any) -> None:
    """``install`` for a command and, for a group, every command already built in it.

    The help option is made on first use, so it gets the coercer then: its value is None
    when --help is not given, and Typer would build an adapter to coerce that None.
    On a Typer without that coercion the command is left untouched.
    """
    if _real_builder() is None:
        return
    install(getattr(command, "params", ()))
    make_help = getattr(command, "get_help_option", None)
    if make_help is not None and not getattr(make_help, "fast", False):

        def get_help_option(ctx: Any) -> Any:
            option = make_help(ctx)
            if option is not None:
                install([option])
            return option

        get_help_option.fast = True  # type: ignore[attr-defined]
        command.get_help_option = get_help_option
    for sub in getattr(command, "commands", {}).values():
        install_tree(sub)
