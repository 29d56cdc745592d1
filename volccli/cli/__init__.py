"""The Typer application: global options, command registration, and `main`.

`main` is the process boundary: usage errors become one line and exit 2, unexpected
exceptions one line and exit 1 (with the traceback under -v), Ctrl-C exit 130, and
SIGTERM, which would otherwise end the process on the spot, goes the way of Ctrl-C
(temp files removed, a batch's jobs in flight awaited) and exits 143.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable, Sequence
from typing import Annotated, Any, get_args

import typer

from .. import __version__
from ..errors import ExitCode, Terminated, interrupt_exit
from . import generate
from .common import Globals
from .lazy import deferred, lazy_group
from .options import GLOBAL_OPTS, opt_parameter
from .signatures import extend_signature

# Every other top-level command, by panel. Its module is imported, and the command built,
# only when it is used: a generation command does not pay for config, task or history.
# Each summary is the first paragraph of the command's own help, which is what the
# top-level help lists (tests/test_help_completion.py compares the two).
OTHER_COMMANDS = [
    deferred(
        "batch",
        "Pipelines",
        "Run many jobs from a JSON Lines or CSV file ('-' reads stdin): one job per row, "
        "checked before anything is sent, run in parallel under a rate limit, journalled so "
        "that running the same command again resumes.",
        "batch_cmd:make",
    ),
    deferred(
        "rerun",
        "Pipelines",
        "Make an image again from its recipe: the same request (inputs re-read and checked "
        "against their recorded SHA-256), or a variation with --seed and --set.",
        "recipe_cmd:make_rerun_command",
    ),
    deferred(
        "inspect",
        "Pipelines",
        "Show how an image was made: its recipe from the sidecar or from inside the file.",
        "recipe_cmd:make_inspect_command",
    ),
    deferred(
        "task",
        "Pipelines",
        "Check, fetch or cancel async tasks (submitted with --async).",
        "task_cmd:make",
    ),
    deferred(
        "history",
        "Pipelines",
        "Show past requests (newest first), or where they are kept.",
        "history_cmd:make",
    ),
    deferred("sandbox", "Setup", "Run the local API emulator.", "sandbox_cmd:make"),
    deferred(
        "doctor",
        "Setup",
        "Check settings, credentials, the endpoint and the clock; say what to fix.",
        "doctor_cmd:make",
    ),
    deferred(
        "completion",
        "Setup",
        "Print the shell completion script for bash, zsh or fish.",
        "completion_cmd:make",
    ),
    deferred("config", "Setup", "Show and change settings and credentials.", "config_cmd:make"),
]

app = typer.Typer(
    name="volccli",
    cls=lazy_group([*generate.lazy_commands(), *OTHER_COMMANDS]),
    help="Volcengine visual (CV) image API from the command line: generate, edit, outpaint, "
    "style products and guide with ControlNet; batch, resume, and test offline with --sandbox.",
    epilog="Display and connection options (-v, -q, --no-color, --sandbox, --profile, --auth, "
    "--base-url, --endpoint, --region, --timeout, --retries, --retry-server-errors) go before "
    "the command (volccli --sandbox txt2img …) or, for the commands whose --help lists them "
    "(the generation commands, batch, rerun, inspect, task get/wait/cancel, history and "
    "doctor), after it.",
    no_args_is_help=True,
    add_completion=False,  # `volccli completion SHELL` prints the scripts instead
    pretty_exceptions_show_locals=False,  # locals hold keys and megabytes of base64
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"volccli {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    version: Annotated[
        bool,
        typer.Option(
            "--version", "-V", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
    **options: Any,
) -> None:
    """Display and connection options here apply to every command."""
    ctx.obj = Globals({k: v for k, v in options.items() if v is not None})


ROOT_SHOWN = ("sandbox", "verbose", "quiet")


# The root help stays short: each command's help lists these in full.
extend_signature(
    root,
    [opt_parameter(opt, hidden=opt.param not in ROOT_SHOWN, panel="") for opt in GLOBAL_OPTS],
)


def _usage_error_type() -> type[BaseException]:
    # Typer vendors Click; its usage errors share this base, reachable from public API.
    for cls in typer.BadParameter.__mro__:
        if cls.__name__ == "ClickException":
            return cls
    return typer.BadParameter


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point."""
    args = list(sys.argv[1:] if argv is None else argv)
    _reopen_closed_streams()
    undecodable = next((arg for arg in args if not _is_utf8(arg)), None)
    if undecodable is not None:
        # Such a name would go into the request, the recipe and the history as text, and
        # fail there after the image was paid for: refused before anything happens.
        shown = undecodable.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        sys.stderr.write(
            f"volccli: error: the argument '{shown}' is not valid UTF-8; rename the file "
            "(or pipe an image in with '-'), or re-encode the text as UTF-8\n"
        )
        sys.exit(int(ExitCode.USAGE))
    # The shell's completion script asks by running volccli with completion_cmd.COMPLETE_VAR
    # set; the name is spelled out here so that other runs do not import that module.
    if os.environ.get("_VOLCCLI_COMPLETE"):
        from .completion_cmd import enable_shell_completion

        enable_shell_completion()
    restore = _terminate_like_ctrl_c()
    try:
        code = app(args=args, prog_name="volccli", standalone_mode=False)
    except SystemExit as exc:
        if exc.code != 1 or not _stdout_abandoned():
            raise
        # Typer's and Rich's own answer to a closed stdout (--help | head) is exit 1.
        # Ours, as for every other command, is 8.
        code = ExitCode.OUTPUT
    except _usage_error_type() as exc:
        code = _report_usage_error(exc, args)
    except typer.Abort:
        sys.stderr.write("volccli: aborted\n")
        code = ExitCode.UNEXPECTED
    except KeyboardInterrupt as exc:
        line, code = interrupt_exit(exc)
        sys.stderr.write(line + "\n")
    except BrokenPipeError:
        # The reader went away (volccli … | head): not worth a traceback, but the
        # output did not all arrive.
        from ..ui import detach_stdout

        detach_stdout()
        code = ExitCode.OUTPUT
    except OSError as exc:
        if exc.errno not in _STREAM_ERRORS:
            raise
        # stdout is a full disk (> /dev/full) or a broken device: the output is lost.
        from ..ui import detach_stdout

        detach_stdout()
        sys.stderr.write(
            f"volccli: error: cannot write the output ({exc.strerror}); "
            "check where stdout goes and its free space\n"
        )
        code = ExitCode.OUTPUT
    except Exception as exc:  # the last line of defence: one line, no traceback
        if "-v" in args or "--verbose" in args or os.environ.get("VOLCCLI_DEBUG"):
            raise
        sys.stderr.write(
            f"volccli: unexpected error: {type(exc).__name__}: {exc}; "
            "run again with -v for the traceback and report it\n"
        )
        code = ExitCode.UNEXPECTED
    finally:
        restore()
    sys.exit(int(code or 0))


# What writing to stdout fails with when the output itself, not volccli, is the problem.
_STREAM_ERRORS = frozenset(
    {errno.ENOSPC, errno.EIO, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}
)


def _reopen_closed_streams() -> None:
    """A stream closed by the caller (>&-, 2>&-) is None to Python: point it at the null
    device, as if the caller had discarded it, so writing to it cannot crash. Opening it
    takes the lowest free descriptor, the closed one, so no file lands there by chance."""
    for name in ("stdin", "stdout", "stderr"):
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, "r" if name == "stdin" else "w"))  # noqa: SIM115


def _is_utf8(arg: str) -> bool:
    """False for an argument with bytes that are not UTF-8 (Python keeps them as
    lone surrogates, which cannot be written out as text)."""
    try:
        arg.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _stdout_abandoned() -> bool:
    """True after Typer or Rich gave up on a stdout whose reader went away.

    Typer wraps sys.stdout in a PacifyFlushWrapper; Rich points file descriptor 1 at
    /dev/null. Either way each then exits 1.
    """
    if type(sys.stdout).__name__ == "PacifyFlushWrapper":
        return True
    try:
        return os.path.samestat(os.fstat(1), os.stat(os.devnull))
    except OSError:
        return False


def _terminate_like_ctrl_c() -> Callable[[], None]:
    """Make SIGTERM raise Terminated in the main thread; return what undoes it."""
    import signal

    def terminate(signum: int, frame: object) -> None:
        raise Terminated

    try:
        previous = signal.signal(signal.SIGTERM, terminate)
    except (ValueError, AttributeError):  # not the main thread (an embedding program)
        return lambda: None
    return lambda: signal.signal(signal.SIGTERM, previous)


def _report_usage_error(exc: BaseException, args: Sequence[str]) -> int:
    """Click's usage errors, as one line instead of a panel."""
    ctx = getattr(exc, "ctx", None)
    message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
    if type(exc).__name__ == "NoArgsIsHelpError":
        # A group run without its command: the help is the answer, not an error. Its
        # message is the help text, or "" when rich printed the help already (while the
        # error was made); echoed as --help echoes it, so both print the same.
        typer.echo(message)
        return 0
    # Choice and parser errors come through pydantic, which prefixes its own wording.
    message = message.replace(": Value error, ", ": ")
    where = ctx.command_path if ctx is not None else "volccli"
    if ctx is None or ctx.parent is None:
        # Some option errors carry no context, or the root's: name the command typed.
        command = next((arg for arg in args if not arg.startswith("-")), "")
        if command in getattr(app.info.cls, "lazy", {}):
            where = f"volccli {command}"
    hint = f"see '{where} --help'"
    name = getattr(exc, "option_name", None)
    takes_value = _global_option_takes_value(name)
    if takes_value is not None and where != "volccli":
        # A display or connection option after a command that does not take it there.
        value = " …" if takes_value else ""
        rest = where.split(" ", 1)[1]
        hint = f"put it before the command: volccli {name}{value} {rest} …"
    text = " ".join(f"volccli: error: {message.rstrip('.')}; {hint}".split())
    sys.stderr.write(text + "\n")
    return int(getattr(exc, "exit_code", ExitCode.USAGE) or ExitCode.USAGE)


def _global_option_takes_value(name: object) -> bool | None:
    """Whether a display or connection option takes a value; None for any other name."""
    for opt in GLOBAL_OPTS:
        if name in opt.decls:
            return bool not in (opt.type, *get_args(opt.type))
    return None
