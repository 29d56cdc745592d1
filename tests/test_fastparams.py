"""The fast option coercion answers exactly as Typer's own, or leaves the value to it;
a plain generation command runs without importing pydantic; and on a Typer without the
pydantic coercion (before 0.29) the fast path stays off and Typer coerces everything."""

from __future__ import annotations

import math
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import typer
from helpers_everyday import invoke
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.models import OptionInfo

from volccli.cli import app, fastparams
from volccli.cli.fastparams import (
    DECLINED,
    FastCoercion,
    _real_builder,
    install_tree,
    quick_value,
)

try:  # Typer 0.29 and later coerce through pydantic; the fast path stands in for that
    from typer._coercion import build_runtime_param, resolve_type_descriptor
except ImportError:  # older Typer: nothing to compare with, and the fast path is off
    build_runtime_param = resolve_type_descriptor = None  # type: ignore[assignment]

needs_pydantic_coercion = pytest.mark.skipif(
    resolve_type_descriptor is None,
    reason="this Typer has no pydantic coercion for the fast path to stand in for",
)

ROOT = Path(__file__).resolve().parent.parent


def typer_says(annotation: Any, info: OptionInfo, value: Any) -> tuple[str, Any]:
    descriptor = resolve_type_descriptor(annotation, info)
    try:
        return "ok", build_runtime_param(descriptor)._coerce_value(value, param=None, ctx=None)  # type: ignore[arg-type]
    except Exception as exc:
        return "error", type(exc).__name__


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return type(a) is type(b) and a == b


numeric_text = st.one_of(
    st.from_regex(r"[+-]?[0-9]{1,25}", fullmatch=True),
    st.from_regex(r"[+-]?[0-9]{0,8}\.?[0-9]{0,8}([eE][+-]?[0-9]{1,3})?", fullmatch=True),
    st.text(alphabet="0123456789+-.eE_ x٣", max_size=12),
)
bounds = st.sampled_from([(None, None), (0, 100), (-1, 1), (1, None)])


@needs_pydantic_coercion
@settings(max_examples=400, deadline=None)
@given(
    annotation=st.sampled_from([int, float, str]),
    value=st.one_of(numeric_text, st.integers(-(10**20), 10**20), st.floats(), st.text()),
    limits=bounds,
)
def test_fast_values_equal_typers(annotation: Any, value: Any, limits: tuple[Any, Any]) -> None:
    info = OptionInfo(min=limits[0], max=limits[1])
    descriptor = resolve_type_descriptor(annotation, info)
    quick = quick_value(descriptor, value, multi=False)
    if quick is DECLINED:
        return
    outcome, expected = typer_says(annotation, info, value)
    assert outcome == "ok", (annotation, value, limits, expected)
    assert same(quick, expected), (annotation, value, quick, expected)


@needs_pydantic_coercion
def test_common_values_take_the_fast_path() -> None:
    def quick(annotation: Any, value: Any, multi: bool = False, **info: Any) -> Any:
        return quick_value(
            resolve_type_descriptor(annotation, OptionInfo(**info)), value, multi=multi
        )

    assert quick(int, "1024") == 1024
    assert quick(float, "0.5") == 0.5
    assert quick(float, 3) == 3.0 and isinstance(quick(float, 3), float)
    assert quick(str, "a red bicycle") == "a red bicycle"
    assert quick(str, None) is None
    assert quick(list[str], None, multi=True) == ()
    assert quick(list[str], ("a=1", "b=2"), multi=True) == ["a=1", "b=2"]
    assert quick(list[str], (), multi=True) == []
    # Left to Typer: out of bounds, unusual literals, other types.
    assert quick(int, "70000", min=0, max=65535) is DECLINED
    assert quick(int, "1_000") is DECLINED
    assert quick(float, "inf") is DECLINED
    assert quick(bool, "yes") is DECLINED
    assert quick(Path, "out") is DECLINED


@needs_pydantic_coercion
def test_declined_values_get_typers_answer_and_message() -> None:
    info = OptionInfo(min=0, max=10)
    descriptor = resolve_type_descriptor(int, info)
    coercer = FastCoercion(descriptor)
    command = typer.main.get_command(app)
    ctx = typer.Context(command)
    param = next(p for p in command.params if p.name == "retries")
    assert coercer.coerce("1_0", param=param, ctx=ctx) == 10
    with pytest.raises(typer.BadParameter):
        coercer.coerce("11", param=param, ctx=ctx)
    with pytest.raises(typer.BadParameter):
        coercer.coerce("many", param=param, ctx=ctx)


@needs_pydantic_coercion
def test_every_built_parameter_gets_it() -> None:
    command = typer.main.get_command(app)
    install_tree(command)
    sub = command.get_command(typer.Context(command), "txt2img")  # type: ignore[attr-defined]
    params = [*command.params, *sub.params]
    assert params and all(isinstance(p._runtime_param, FastCoercion) for p in params)


def test_a_generation_command_does_not_import_pydantic(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from volccli.cli import main\n"
        "try:\n"
        "    main(['txt2img', 'a cat', '--width', '512', '--scale', '3.5', '--set', 'x=1',\n"
        "          '--dry-run', '--base-url', 'http://127.0.0.1:9'])\n"
        "except SystemExit as exit:\n"
        "    print('EXIT', exit.code)\n"
        "print('PYDANTIC', 'pydantic' in sys.modules)\n"
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "PYTHONPATH": str(ROOT),
        "VOLCCLI_CONFIG_DIR": str(tmp_path / "c"),
        "VOLCCLI_DATA_DIR": str(tmp_path / "d"),
        "VOLCCLI_API_KEY": "k",
    }
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert "EXIT 0" in done.stdout, done.stderr
    assert '"width": 512' in done.stdout and '"scale": 3.5' in done.stdout
    assert "PYDANTIC False" in done.stdout


def test_the_fast_path_is_on_exactly_when_typer_has_the_coercion_it_wraps() -> None:
    command = typer.main.get_command(app)
    install_tree(command)
    sub = command.get_command(typer.Context(command), "txt2img")  # type: ignore[attr-defined]
    fast = [isinstance(getattr(p, "_runtime_param", None), FastCoercion) for p in sub.params]
    if resolve_type_descriptor is None:
        assert _real_builder() is None
        assert not any(fast)
        assert not getattr(sub.get_help_option, "fast", False)
    else:
        assert _real_builder() is build_runtime_param
        assert fast and all(fast)


@pytest.mark.parametrize(
    "internals",
    [
        None,  # no typer._coercion at all (Typer before 0.29)
        types.SimpleNamespace(build_runtime_param=print),  # no TypeDescriptor beside it
        types.SimpleNamespace(build_runtime_param=print, TypeDescriptor=object),  # other fields
    ],
    ids=["absent", "no-descriptor", "other-descriptor"],
)
def test_missing_internals_turn_the_fast_path_off(
    internals: types.SimpleNamespace | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if internals is None:
        monkeypatch.delitem(sys.modules, "typer._coercion", raising=False)
    else:
        monkeypatch.setitem(sys.modules, "typer._coercion", internals)
    assert _real_builder() is None


def test_when_off_typer_coerces_every_value(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fastparams, "_real_builder", lambda: None)
    command = typer.main.get_command(app)
    install_tree(command)
    sub = command.get_command(typer.Context(command), "txt2img")  # type: ignore[attr-defined]
    assert not any(isinstance(getattr(p, "_runtime_param", None), FastCoercion) for p in sub.params)
    assert not getattr(sub.get_help_option, "fast", False)
    monkeypatch.setenv("VOLCCLI_API_KEY", "k")
    base = ["--base-url", "http://127.0.0.1:9", "--dry-run"]
    run = invoke(["txt2img", "a cat", "--width", "640", "--scale", "3.5", *base], capsys)
    assert run.code == 0, run.err
    assert '"width": 640' in run.out and '"scale": 3.5' in run.out
    bad = invoke(["txt2img", "a cat", "--width", "wide", *base], capsys)
    assert bad.code == 2 and len(bad.err_lines) == 1 and "'--width'" in bad.err_lines[0]
