"""Credentials from the Volcengine tools' own conventions: VOLC_ACCESSKEY/VOLC_SECRETKEY,
VOLCENGINE_*, ~/.volc/credentials, ~/.volc/config and ~/.volcengine/config.json, read so
that keys already set up for the Volcengine SDKs and CLI work without `volccli config set`.

A file that cannot be used is a note (one line naming the file, what is wrong and the one
fix) and is skipped. Notes never quote the file: the parsers' own messages repeat the
offending line, which in these files is usually a secret, so only line numbers are passed on.
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from .jsonkind import json_kind


class Note(NamedTuple):
    """Something wrong that does not stop a command: what it is, and the one fix."""

    message: str
    fix: str = ""

    @property
    def text(self) -> str:
        """One line: the message, then the fix."""
        return f"{self.message}; {self.fix}" if self.fix else self.message


@dataclass
class CredentialSet:
    access_key: str
    secret_key: str
    session_token: str
    source: str
    region: str = ""
    region_source: str = ""  # when the region comes from elsewhere than the keys


class _Skip(Exception):
    """A file that cannot be used: the note says why, and how to fix it."""

    def __init__(self, message: str, fix: str = "fix the file, or remove it") -> None:
        super().__init__(message)
        self.note = Note(message, fix)


def unreadable(path: Path, exc: OSError | UnicodeDecodeError) -> tuple[str, str]:
    """Why a file cannot be read, and the fix, without any of its content (a decoding
    error's message carries the undecodable bytes)."""
    if isinstance(exc, UnicodeDecodeError):
        return f"cannot read {path}: it is not UTF-8 text (byte {exc.start})", (
            "re-save it as UTF-8"
        )
    if isinstance(exc, IsADirectoryError):
        return f"cannot read {path}: it is a folder", "it must be a file"
    reason = exc.strerror or type(exc).__name__
    return f"cannot read {path} ({reason})", "fix its permissions"


def _fields(path: Path, where: str, data: Mapping[str, Any], names: dict[str, bool]) -> list[str]:
    """The values of ``names`` (name: required) as stripped text; "" for an optional one
    that is absent. Raises _Skip when one is missing or is not text."""
    values = []
    for name, required in names.items():
        value = data.get(name)
        if value is not None and not isinstance(value, str):
            # A number or a list is no key: using it would fail deep in the signing.
            raise _Skip(
                f'{path}{where}: "{name}" is {json_kind(value)}, not text; ignoring the file',
                f'write "{name}" as a quoted string, or remove the file',
            )
        text = (value or "").strip()
        if required and not text:
            wanted = " and ".join(f'"{n}"' for n, needed in names.items() if needed)
            raise _Skip(
                f"{path}{where} has no {wanted}; ignoring the file",
                f"add {wanted}, or remove the file",
            )
        values.append(text)
    return values


def _env(env: Mapping[str, str], name: str) -> str:
    return env.get(name, "").strip() if name else ""


def volcengine_credentials(
    env: Mapping[str, str], home: Path, notes: list[Note]
) -> CredentialSet | None:
    """The first complete key pair among the conventions of the Volcengine SDKs and CLI."""
    for ak_var, sk_var, token_var in (
        ("VOLC_ACCESSKEY", "VOLC_SECRETKEY", ""),
        ("VOLCENGINE_ACCESS_KEY", "VOLCENGINE_SECRET_KEY", "VOLCENGINE_SESSION_TOKEN"),
    ):
        ak, sk = _env(env, ak_var), _env(env, sk_var)
        if ak or sk:
            if not (ak and sk):
                given, missing = (ak_var, sk_var) if ak else (sk_var, ak_var)
                notes.append(
                    Note(
                        f"{ak_var} and {sk_var} must both be set; ignoring them",
                        f"export {missing} too, or unset {given}",
                    )
                )
                continue
            return CredentialSet(
                ak,
                sk,
                _env(env, token_var),
                f"env {ak_var}/{sk_var}",
                _env(env, "VOLCENGINE_REGION"),
                "env VOLCENGINE_REGION",
            )
    for reader in (_volc_credentials_file, _volc_config_file, _volcengine_config_json):
        try:
            found = reader(env, home)
        except _Skip as skip:
            notes.append(skip.note)
            continue
        if found:
            return found
    return None


def _read(path: Path) -> str | None:
    """The file's text; None when it does not exist. Raises _Skip when it cannot be read."""
    if not path.exists():
        return None
    try:
        # utf-8-sig: a file saved by Notepad starts with a byte-order mark.
        return path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        problem, fix = unreadable(path, exc)
        raise _Skip(f"{problem}; ignoring the file", f"{fix}, or remove it") from None


def _json_object(path: Path, holding: str = "") -> dict[str, Any] | None:
    """The JSON object in ``path``; None when there is no such file. ``holding`` says
    what the object should have, for the message when it is something else."""
    text = _read(path)
    if text is None:
        return None
    data = _json(path, text)
    if not isinstance(data, dict):
        raise _Skip(f"{path} is {json_kind(data)}, not a JSON object{holding}; ignoring the file")
    return data


def _json(path: Path, text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        # JSONDecodeError's message names the position only; other ValueErrors (a number
        # too long to convert) may quote digits of the file, so they are not passed on.
        line = f" (line {exc.lineno})" if isinstance(exc, json.JSONDecodeError) else ""
        raise _Skip(f"{path} is not valid JSON{line}; ignoring the file") from None
    except RecursionError:
        raise _Skip(f"{path} is not valid JSON (nested too deeply); ignoring the file") from None


# Each reader returns None when its file is absent and raises _Skip when the file
# cannot be used; volcengine_credentials turns a _Skip into a note.


def _volc_credentials_file(env: Mapping[str, str], home: Path) -> CredentialSet | None:
    path = home / ".volc" / "credentials"
    text = _read(path)
    if text is None:
        return None
    section = _ini_default_section(path, text)
    ak, sk, token = _fields(
        path,
        " [default]",
        section,
        {"access_key_id": True, "secret_access_key": True, "session_token": False},
    )
    return CredentialSet(ak, sk, token, f"file {path}")


def _ini_default_section(path: Path, text: str) -> Mapping[str, str]:
    import configparser  # here: only for this file, which few people have

    # No interpolation: a secret key may hold a '%', and the interpolation error would
    # quote the value.
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text)
    except configparser.Error as exc:
        raise _Skip(f"{path} {_ini_problem(exc)}; ignoring the file") from None
    if not parser.has_section("default"):
        raise _Skip(
            f"{path} has no [default] section; ignoring the file",
            "put access_key_id and secret_access_key under [default], or remove the file",
        )
    return dict(parser.items("default", raw=True))


def _ini_problem(exc: Exception) -> str:
    """Where configparser stopped and what it found there, without the line itself (its
    messages quote it, and in a credentials file that line is usually a key)."""
    import configparser

    lineno = getattr(exc, "lineno", None)
    errors = getattr(exc, "errors", None)
    if lineno is None and errors:
        lineno = errors[0][0]
    where = f"line {lineno}" if lineno else "somewhere"
    if isinstance(exc, configparser.MissingSectionHeaderError):
        return f"{where} comes before any [section]"
    if isinstance(exc, (configparser.DuplicateSectionError, configparser.DuplicateOptionError)):
        return f"{where} repeats a section or a name"
    if isinstance(exc, configparser.ParsingError):
        return f"{where} is not `name = value`"
    return f"cannot be parsed ({where})"


def _volc_config_file(env: Mapping[str, str], home: Path) -> CredentialSet | None:
    path = home / ".volc" / "config"
    data = _json_object(path, ' with "ak" and "sk"')
    if data is None:
        return None
    ak, sk, token = _fields(path, "", data, {"ak": True, "sk": True, "session_token": False})
    return CredentialSet(ak, sk, token, f"file {path}")


def _volcengine_config_json(env: Mapping[str, str], home: Path) -> CredentialSet | None:
    path = home / ".volcengine" / "config.json"
    data = _json_object(path)
    if data is None:
        return None
    name, where = _profile_name(path, env, data)
    profiles = data.get("profiles")
    if not isinstance(profiles, dict):
        raise _Skip(
            f'{path}: "profiles" is {json_kind(profiles)}, not an object; ignoring the file'
        )
    if name not in profiles:
        raise _Skip(
            f"{path} has no profile {name!r} ({where}); ignoring the file",
            'name an existing profile in "current" or VOLCENGINE_PROFILE, or remove the file',
        )
    profile = profiles[name]
    if not isinstance(profile, dict):
        raise _Skip(
            f"{path}: profile {name!r} is {json_kind(profile)}, not an object; ignoring the file"
        )
    ak, sk, token, region = _fields(
        path,
        f" profile {name!r}",
        profile,
        {"access-key": True, "secret-key": True, "session-token": False, "region": False},
    )
    return CredentialSet(ak, sk, token, f"file {path} (profile {name!r})", region)


def _profile_name(path: Path, env: Mapping[str, str], data: Mapping[str, Any]) -> tuple[str, str]:
    """The profile to use, and where its name came from."""
    if env.get("VOLCENGINE_PROFILE"):
        return env["VOLCENGINE_PROFILE"], "named by VOLCENGINE_PROFILE"
    current = data.get("current")
    if current is not None and not isinstance(current, str):
        raise _Skip(
            f'{path}: "current" is {json_kind(current)}, not a profile name; ignoring the file',
            'write "current" as a quoted profile name, or remove the file',
        )
    if not current:
        raise _Skip(
            f"{path} names no current profile; ignoring the file",
            'set "current" in it or VOLCENGINE_PROFILE, or remove the file',
        )
    return current, 'named by "current"'
