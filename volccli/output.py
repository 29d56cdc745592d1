"""Where results go: name templates, the output folder, and atomic never-clobber writes.

A result is written to a hidden temp file in the target folder, checked to decode as an
image, then linked into place under its final name. ``os.link`` fails instead of
replacing, so two processes racing for one name can never overwrite each other; the
``overwrite`` policy is the only path that replaces a file, and it does so atomically.
"""

import contextlib
import errno
import functools
import os
import re
import string
import tempfile
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Final, Literal, NamedTuple

from .errors import InputError, OutputError

OnExists = Literal["suffix", "skip", "overwrite", "fail"]
DEFAULT_TEMPLATE: Final = "{command}_{prompt}_{seed}"
TOKENS: Final = {
    "command": "the command (txt2img, edit, …) or the req_key for call",
    "prompt": "the prompt as a file-safe slug; {prompt:20} caps it at 20 characters",
    "seed": "the seed sent (or returned by the service)",
    "index": "the image's number in this run, from 0",
    "n": "the image's number within one answer, from 0 (0 unless one request returns several)",
    "date": "the local date, YYYYMMDD",
    "time": "the local time, HHMMSS",
    "request_id": "the API's request id",
    "req_key": "the req_key",
    "hash": "the first 8 characters of the job's request hash",
    "input": "the stem of the first input image's file name (a URL's too)",
    "row": "the batch row number",
    "name": "the batch row's name column",
}
# Tokens whose value is only known once the answer is in.
RESPONSE_TOKENS: Final = frozenset({"request_id", "n"})
# Tokens that tell apart the images of one command (-n N): each job's seed, index and
# request differ.
PER_IMAGE_TOKENS: Final = frozenset({"seed", "index", "hash", "request_id"})
SLUG_DEFAULT_CHARS: Final = 48
SLUG_MAX_BYTES: Final = 120
NAME_PART_MAX_BYTES: Final = 200
SIDECAR_SUFFIX: Final = ".json"
RECIPE_SCHEMA_FAMILY: Final = "volccli.recipe/"  # recipe.SCHEMA is this plus its version
_SUFFIX_LIMIT = 10_000


@functools.lru_cache(maxsize=64)
def template_fields(template: str) -> tuple[tuple[str, str], ...]:
    """(token, format spec) pairs of a template; raise InputError on unknown tokens.

    Cached: a batch renders the same template for every job.
    """
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise InputError(
            f"--name {template!r} is malformed ({exc})",
            "use {token} placeholders; write {{ and }} for literal braces",
        ) from None
    fields = []
    for _literal, name, spec, conversion in parsed:
        if name is None:
            continue
        if conversion:
            raise InputError(
                f"--name token {{{name}!{conversion}}}: conversions are not supported",
                f"write {{{name}}}",
            )
        if name not in TOKENS:
            raise InputError(
                f"--name has an unknown token {{{name}}}",
                f"use one of {', '.join('{' + t + '}' for t in TOKENS)}",
            )
        if spec and (not spec.isdigit() or int(spec) == 0):
            raise InputError(
                f"--name token {{{name}:{spec}}}: the spec must be a length of at least 1",
                "write e.g. {prompt:20}",
            )
        fields.append((name, spec))
    return tuple(fields)


def per_image_tokens(template: str) -> set[str]:
    """The tokens of ``template`` that differ between the images of one command."""
    return {token for token, _ in template_fields(template)} & PER_IMAGE_TOKENS


_WINDOWS_DRIVE: Final = re.compile(r"^[A-Za-z]:")


def is_absolute(path: str) -> bool:
    """A path that starts outside any folder it is given in: /…, \\…, ~…, C:…"""
    return path.startswith(("/", "\\", "~")) or _WINDOWS_DRIVE.match(path) is not None


def climbs(path: str) -> bool:
    """A path with a '..' part."""
    return ".." in re.split(r"[/\\]", path)


def leaves_folder(path: str) -> bool:
    """A relative path that may still end up outside its folder."""
    return is_absolute(path) or climbs(path)


def check_template(template: str) -> None:
    """Refuse templates that could write outside the output folder."""
    template_fields(template)
    if not template.strip():
        raise InputError("--name is empty", f"use e.g. --name '{DEFAULT_TEMPLATE}'")
    if _WINDOWS_DRIVE.match(template):
        # A drive on Windows: refused everywhere, so a name means the same on every system.
        raise InputError(
            f"--name {template!r} starts like a Windows drive ({template[:2]})",
            "put something before the ':', e.g. --name 'img_x:y'",
        )
    if is_absolute(template):
        raise InputError(
            f"--name {template!r} is an absolute path",
            "names are relative to --output-dir; set the folder with -o",
        )
    if re.search(r"[\x00-\x1f\x7f]", template):
        raise InputError(
            f"--name {template!r} has a control character", "use printable characters only"
        )
    if climbs(template):
        raise InputError(
            f"--name {template!r} climbs out of the output folder with '..'",
            "keep names inside --output-dir; set the folder with -o",
        )


def slug(text: str, max_chars: int = SLUG_DEFAULT_CHARS) -> str:
    """A file-name-safe form of free text; keeps letters of every script (CJK included)."""
    text = unicodedata.normalize("NFKC", text)
    text = re.sub(r"[^\w]+", "-", text, flags=re.UNICODE).strip("-_").lower()
    return fit_bytes(text[:max_chars].rstrip("-_"), SLUG_MAX_BYTES).rstrip("-_")


def fit_bytes(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` bytes of UTF-8, never inside a character."""
    return text.encode()[:limit].decode("utf-8", "ignore")


def _safe_component(value: str) -> str:
    """A token value must not add folders or hidden names of its own."""
    value = re.sub(r'[/\\:*?"<>|\x00-\x1f]+', "-", value).strip()
    return value.lstrip(".") or "_"


def render_name(template: str, values: Mapping[str, object], now: datetime | None = None) -> str:
    """Fill a template; the result is a relative path without extension."""
    filled: dict[str, str] = {}
    for token, spec in template_fields(template):
        if token in ("date", "time"):
            now = now or datetime.now()
            filled[token] = now.strftime("%Y%m%d" if token == "date" else "%H%M%S")
            continue
        raw = values.get(token)
        text = "" if raw is None else str(raw)
        if token in ("prompt", "name", "input"):
            text = slug(text, int(spec) if spec else SLUG_DEFAULT_CHARS)
        elif spec:
            text = text[: int(spec)]
        filled[token] = "" if not text else _safe_component(text)
    name = _without_specs(template).format(**filled)
    # Empty tokens leave doubled or dangling separators behind: tidy them.
    parts = []
    for part in re.split(r"[/\\]", name):
        part = re.sub(r"([_\-. ])[_\-. ]+", r"\1", part).strip("_-. ")
        if part:
            # File systems allow 255 bytes per name: room for the extension, a -N
            # suffix and the sidecar's .json.
            parts.append(fit_bytes(part, NAME_PART_MAX_BYTES).rstrip("_-. ") or "_")
    if not parts:
        return "image"
    return "/".join(parts)


@functools.lru_cache(maxsize=64)
def _without_specs(template: str) -> str:
    return re.sub(r"\{(\w+):\d+\}", r"{\1}", template)


class OutputSpec(NamedTuple):
    folder: Path | None  # None: write the single image's bytes to stdout
    template: str = DEFAULT_TEMPLATE
    on_exists: OnExists = "suffix"
    sidecar: bool = True
    embed: bool = True


def ensure_folder(folder: Path) -> Path | None:
    """Create the output folder and prove it is writable, before anything is paid for.

    Returns the outermost folder it had to create (None when ``folder`` was there), so
    that a command that then writes nothing can take it away again."""
    missing = next((p for p in (*reversed(folder.parents), folder) if not p.exists()), None)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".volccli-probe-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        if isinstance(exc, (FileExistsError, NotADirectoryError)):
            reason = f"{file_in_the_way(folder) or folder} is a file, not a folder"
        raise OutputError(
            f"cannot write to {folder} ({reason})",
            "choose another --output-dir or fix its permissions",
        ) from None
    return missing


def remove_empty_folders(top: Path) -> None:
    """Remove ``top`` and the folders below it, if they hold no file at all."""
    for path in sorted((p for p in top.rglob("*") if p.is_dir()), reverse=True):
        with contextlib.suppress(OSError):  # not empty: something is kept, and so is it
            path.rmdir()
    with contextlib.suppress(OSError):
        top.rmdir()


def file_in_the_way(folder: Path) -> Path | None:
    """The nearest existing ancestor of ``folder`` (itself included) when it is a file."""
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            return None if candidate.is_dir() else candidate
    return None


def target_for(folder: Path, relative: str, ext: str) -> Path:
    """The absolute path of a rendered name; refused when it leaves the output folder."""
    root = _resolved(folder if folder.is_absolute() else Path.cwd() / folder)
    target = os.path.normpath(os.path.join(root, f"{relative}{ext}"))
    if not target.startswith(os.path.join(root, "")):
        raise InputError(f"--name resolves outside {folder}", "keep names inside --output-dir")
    return Path(target)


@functools.lru_cache(maxsize=32)
def _resolved(folder: Path) -> str:
    # Resolved once per folder: a batch asks for thousands of names inside one folder,
    # and each resolve() is a system call per path component.
    return str(folder.resolve())


def sidecar_path(image: Path) -> Path:
    return image.with_name(image.name + SIDECAR_SUFFIX)


def taken(path: Path) -> bool:
    """An image, or a sidecar that is not a stale recipe of ours, holds the name."""
    if path.exists():
        return True
    side = sidecar_path(path)
    # A recipe of ours without its image describes an image that was deleted: the next
    # image of that name may replace it rather than take a -1 name beside it. Any other
    # file of that name is somebody's, and holds the name.
    return side.exists() and not _holds_recipe(side)


_RECIPE_MAX_BYTES = 1024 * 1024


def is_recipe(value: object) -> bool:
    """A JSON value that is a volccli recipe: its schema says so."""
    schema = value.get("schema") if isinstance(value, dict) else None
    return isinstance(schema, str) and schema.startswith(RECIPE_SCHEMA_FAMILY)


def _holds_recipe(side: Path) -> bool:
    """True for a recipe sidecar volccli wrote (its schema says so), not anybody's file."""
    import json  # here: only a name held by a leftover sidecar needs it

    try:
        if side.stat().st_size > _RECIPE_MAX_BYTES:
            return False
        return is_recipe(json.loads(side.read_bytes()))
    except (OSError, ValueError, RecursionError):
        return False


def drop_replaced_recipe(image: Path) -> None:
    """After an image was overwritten without a new sidecar: its old recipe describes
    the image that is gone, so it goes too (a file that is not a recipe stays)."""
    side = sidecar_path(image)
    if _holds_recipe(side):
        side.unlink(missing_ok=True)


def candidates(target: Path) -> Iterable[Path]:
    yield target
    for n in range(1, _SUFFIX_LIMIT):
        yield target.with_name(f"{target.stem}-{n}{target.suffix}")


def precheck(target: Path, on_exists: OnExists, sidecar: bool = True) -> Literal["write", "skip"]:
    """Decide before the request is sent when the name is already known."""
    if on_exists == "overwrite":
        check_replaceable(target, sidecar)
        return "write"
    if not taken(target):
        return "write"
    if on_exists == "skip":
        return "skip"
    if on_exists == "fail":
        raise OutputError(
            f"{target} already exists",
            "choose another --name, or --on-exists suffix|skip|overwrite",
        )
    return "write"


def check_replaceable(target: Path, sidecar: bool) -> None:
    """--on-exists overwrite replaces an image and its recipe, never a folder or a file
    of somebody's that happens to have the sidecar's name."""
    if target.is_dir():
        raise OutputError(f"{target} is a folder", "choose another --name")
    side = sidecar_path(target)
    if sidecar and (side.is_dir() or (side.exists() and not _holds_recipe(side))):
        what = "a folder" if side.is_dir() else "not a volccli recipe"
        raise OutputError(
            f"{side} is {what}, and --on-exists overwrite replaces only images and their recipes",
            "move it away, or use --no-sidecar or --on-exists suffix",
        )


TEMP_PREFIX = ".volccli-"
_TEMP_ATTEMPTS = 100


def _open_temp(folder: Path, suffix: str) -> tuple[int, Path]:
    """Create a new hidden temp file in ``folder``, opened for writing.

    Mode 0o666 before the umask, what a plain open() gives (mkstemp's 0600 is for
    secrets, not images); O_EXCL makes the name ours alone. The folder is made only when
    it is missing: a batch writes thousands of files into one that exists.
    """
    # The pid in the name tells a later run the leftovers of a killed writer from the
    # files of one still running (see sweep_stale_temps).
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    flags |= getattr(os, "O_BINARY", 0)
    for _ in range(_TEMP_ATTEMPTS):
        path = folder / f"{TEMP_PREFIX}{os.getpid()}-{os.urandom(6).hex()}{suffix}"
        try:
            return os.open(path, flags, 0o666), path
        except FileExistsError:
            continue
        except FileNotFoundError:
            folder.mkdir(parents=True, exist_ok=True)
            return os.open(path, flags, 0o666), path
    raise FileExistsError(errno.EEXIST, "no free temp file name", str(folder))


def temp_file(folder: Path, suffix: str = ".part") -> Path:
    fd, path = _open_temp(folder, suffix)
    os.close(fd)
    return path


def sweep_stale_temps(folder: Path, *, recursive: bool = True) -> int:
    """Remove the temp files of writers that are gone (killed mid-write); return how many.

    A batch calls this when it resumes, and a single command for its output folder alone
    (not below it: that may be a whole home folder), so a kill -9 leaves nothing behind
    for good. A temp file is named after its writer's process, which must be gone.
    """
    if os.name != "posix" or not folder.is_dir():
        return 0
    removed = 0
    pattern = f"{TEMP_PREFIX}*.part"
    for path in folder.rglob(pattern) if recursive else folder.glob(pattern):
        pid = path.name[len(TEMP_PREFIX) :].split("-", 1)[0]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        try:
            path.unlink()
        except OSError:
            continue
        removed += 1
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # someone else's process, or no way to tell: leave its files alone
        return True
    return True


def write_temp(folder: Path, data: bytes | Sequence[bytes | memoryview]) -> Path:
    """Write bytes (or pieces of them, in order) to a temp file beside their final place.

    Not fsync'd: the rename that follows is what makes the write atomic, a killed process
    leaves either the old state or the new one, and a batch checks each output's SHA-256
    before it trusts it (its journal is the part that is fsync'd).
    """
    try:
        fd, path = _open_temp(folder, ".part")
    except OSError as exc:
        raise OutputError(
            f"cannot write to {folder} ({exc.strerror})",
            "choose another --output-dir or fix its permissions",
        ) from None
    try:
        try:
            for piece in (data,) if isinstance(data, bytes) else data:
                view = memoryview(piece)
                while view:
                    view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
    except BaseException as exc:  # a full disk, or Ctrl-C / SIGTERM mid-write
        path.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise OutputError(
                f"cannot write to {folder} ({exc.strerror})",
                "free some space or choose another --output-dir",
            ) from None
        raise
    return path


def place(tmp: Path, target: Path, on_exists: OnExists) -> Path | None:
    """Move ``tmp`` to ``target`` under the policy; None when skipped. ``tmp`` is consumed."""
    try:
        if not os.path.isdir(target.parent):  # a stat; mkdir on an existing folder raises
            target.parent.mkdir(parents=True, exist_ok=True)
        if on_exists == "overwrite":
            os.replace(tmp, target)
            return target
        for candidate in candidates(target) if on_exists == "suffix" else (target,):
            if on_exists == "suffix" and taken(candidate):
                continue
            if _link_new(tmp, candidate):
                return candidate
            if on_exists == "skip":
                return None
            if on_exists == "fail":
                raise OutputError(
                    f"{candidate} already exists",
                    "choose another --name, or --on-exists suffix|skip|overwrite",
                )
        raise OutputError(f"no free name for {target}", "choose another --name")
    except OSError as exc:
        raise OutputError(
            f"cannot write {target} ({exc.strerror})",
            "check free space and permissions of --output-dir",
        ) from None
    finally:
        tmp.unlink(missing_ok=True)


def _link_new(tmp: Path, target: Path) -> bool:
    """Create ``target`` with tmp's content only if nothing is there; atomic."""
    try:
        os.link(tmp, target)
        return True
    except FileExistsError:
        return False
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK, errno.ENOSYS):
            raise
    # A filesystem without hard links: reserve the name exclusively, then replace it.
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    os.close(fd)
    os.replace(tmp, target)
    return True


def write_text_atomic(path: Path, text: str, *, replace: bool = True) -> None:
    """Write a small text file atomically (sidecars, summaries)."""
    tmp = write_temp(path.parent, text.encode())
    try:
        if replace:
            os.replace(tmp, path)
        elif not _link_new(tmp, path):
            raise OutputError(f"{path} already exists", "remove it or choose another name")
    except OSError as exc:  # a folder of that name, a full disk
        raise OutputError(
            f"cannot write {path} ({exc.strerror})", "move what is in the way, or free some space"
        ) from None
    finally:
        tmp.unlink(missing_ok=True)
