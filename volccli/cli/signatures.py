"""Typer commands whose parameters come from tables, and the options every command takes.

Typer reads a command's parameters from its function signature, so a command built
from the request-kind table or from the shared option tables gets a generated
``__signature__``. Display and connection options (-v, --sandbox, --profile …) are
accepted before the command and after it; the ones after it win.
"""

import functools
import inspect
from collections.abc import Callable, Iterable
from typing import Any

import typer

from ..ui import UI
from .common import Globals, global_options, make_ui
from .options import CONNECTION_OPTS, GLOBAL_OPTS, opt_parameter

CONTEXT = inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context)


def signature_command(
    name: str, doc: str, params: Iterable[inspect.Parameter], run: Callable[[dict[str, Any]], None]
) -> Callable[..., None]:
    """A command function with the given parameters; it hands them to ``run`` as a dict."""

    def command(**kwargs: Any) -> None:
        run(kwargs)

    _set_signature(command, list(params))
    command.__name__ = name.replace("-", "_")
    command.__doc__ = doc
    return command


def extend_signature(fn: Callable[..., Any], params: Iterable[inspect.Parameter]) -> None:
    """Add parameters to a function that receives them through its ``**kwargs``."""
    signature = inspect.signature(fn, eval_str=True)
    kept = [p for p in signature.parameters.values() if p.kind != p.VAR_KEYWORD]
    _set_signature(fn, [*kept, *params])


def _set_signature(fn: Callable[..., Any], params: list[inspect.Parameter]) -> None:
    fn.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]  # read by Typer
    fn.__annotations__ = {p.name: p.annotation for p in params}


def with_global_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Let a command take the display and connection options after it, too.

    They are merged over those given before the command, so the command reads them all
    with ``common.global_options(ctx)``.
    """

    @functools.wraps(fn)
    def command(**kwargs: Any) -> Any:
        local = {opt.param: kwargs.pop(opt.param, None) for opt in GLOBAL_OPTS}
        ctx = kwargs.get("ctx")
        # Typer hands over its (vendored) Click context, not a typer.Context instance.
        if ctx is not None and hasattr(ctx, "find_root"):
            root = ctx.find_root()
            if not isinstance(root.obj, Globals):
                root.obj = Globals()
            root.obj.options.update({k: v for k, v in local.items() if v is not None})
        return fn(**kwargs)

    signature = inspect.signature(fn, eval_str=True)
    params = [*signature.parameters.values(), *(opt_parameter(opt) for opt in GLOBAL_OPTS)]
    _set_signature(command, params)
    return command


def begin(options: dict[str, Any]) -> tuple[dict[str, Any], UI]:
    """For a generated command: take the context and the global options out of its
    arguments; return the merged global options and the UI they ask for."""
    ctx: typer.Context = options.pop("ctx")
    merged = global_options(ctx, {opt.param: options.pop(opt.param) for opt in GLOBAL_OPTS})
    return merged, make_ui(merged)


def connection_flags(merged: dict[str, Any]) -> dict[str, Any]:
    """The connection options out of the merged global options."""
    return {opt.param: merged.get(opt.param) for opt in CONNECTION_OPTS}
