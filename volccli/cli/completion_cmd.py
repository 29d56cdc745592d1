"""`volccli completion SHELL`: print the shell's completion script.

The scripts call volccli back with ``_VOLCCLI_COMPLETE`` set; Typer answers that before
any command runs. Its completion classes are registered only when that variable is
present, so ordinary runs (and `--help`) do not pay for them.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any

import typer

from .lazy import LazyGroup, command_from

PROG_NAME = "volccli"
COMPLETE_VAR = "_VOLCCLI_COMPLETE"
# Where each script is kept in the repository (completions/), by shell.
FILES = {"bash": "volccli.bash", "zsh": "_volccli", "fish": "volccli.fish"}


class Shell(str, Enum):
    bash = "bash"
    zsh = "zsh"
    fish = "fish"


# Typer's bash script puts the answers into COMPREPLY as they are, so accepting a value
# with spaces ("Top Left Light") breaks the command line into several words. This one
# escapes each answer as one word, unless the word being completed opens a quote (then
# readline closes the quote itself and an escape would be taken literally). Answers are
# read line by line, so none is expanded as a glob; an empty line (no answer) is
# skipped, which leaves COMPREPLY empty and bash completing file names.
BASH_SCRIPT = r"""_volccli_completion() {
    local cur=${COMP_WORDS[COMP_CWORD]} reply
    COMPREPLY=()
    while IFS= read -r reply; do
        [[ -n $reply ]] || continue
        [[ $cur == [\"\']* ]] || printf -v reply %%q "$reply"
        COMPREPLY+=("$reply")
    done < <(env COMP_WORDS="${COMP_WORDS[*]}" COMP_CWORD="$COMP_CWORD" \
        %(var)s=complete_bash "$1")
    return 0
}

complete -o default -F _volccli_completion %(prog)s
"""


def script(shell: str) -> str:
    """The completion script for ``shell``, ending with a newline."""
    if shell == "bash":
        return BASH_SCRIPT % {"var": COMPLETE_VAR, "prog": PROG_NAME}
    from typer.completion import get_completion_script

    text = get_completion_script(prog_name=PROG_NAME, complete_var=COMPLETE_VAR, shell=shell)
    return text.rstrip("\n") + "\n"


def enable_shell_completion() -> None:
    """Register Typer's completion classes (the app is built with add_completion=False)."""
    from typer.completion import completion_init

    completion_init()


def completion(
    shell: Annotated[Shell, typer.Argument(help="The shell: bash, zsh or fish.", metavar="SHELL")],
) -> None:
    """Print the completion script for bash, zsh or fish."""
    typer.echo(script(shell.value), nl=False)


HELP = (
    "Print the shell completion script for bash, zsh or fish.\n\n"
    "Install it, for bash: volccli completion bash > "
    "~/.local/share/bash-completion/completions/volccli (with the bash-completion package; "
    "without it, add source <(volccli completion bash) to ~/.bashrc); for zsh: volccli "
    "completion zsh > ~/.zfunc/_volccli (with fpath+=~/.zfunc before compinit in ~/.zshrc); "
    "for fish: volccli completion fish > ~/.config/fish/completions/volccli.fish. Make the "
    "folder first if it is missing (mkdir -p)."
)


def make(group: LazyGroup) -> Any:
    return command_from(group, "completion", completion, HELP)
