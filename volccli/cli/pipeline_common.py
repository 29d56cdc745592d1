"""Shared by the pipeline commands: display and connection options after the command."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from .common import Globals
from .options import GLOBAL_OPTS, opt_parameter

F = TypeVar("F", bound=Callable[..., Any])


def with_global_options(fn: F) -> F:
    """Accept -v, -q, --sandbox, --base-url … after the command too, like every command.

    The values given after the command are merged over those given before it, so the
    command reads them all with ``common.global_options(ctx)``.
    """
    signature = inspect.signature(fn, eval_str=True)
    params = [*signature.parameters.values(), *(opt_parameter(opt) for opt in GLOBAL_OPTS)]

    @functools.wraps(fn)
    def command(**kwargs: Any) -> Any:
        local = {opt.param: kwargs.pop(opt.param, None) for opt in GLOBAL_OPTS}
        ctx = kwargs.get("ctx")
        if isinstance(ctx, typer.Context):
            root = ctx.find_root()
            if not isinstance(root.obj, Globals):
                root.obj = Globals()
            root.obj.options.update({k: v for k, v in local.items() if v is not None})
        return fn(**kwargs)

    command.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]  # read by Typer
    command.__annotations__ = {p.name: p.annotation for p in params}
    return command  # type: ignore[return-value]  # same call shape, more options
