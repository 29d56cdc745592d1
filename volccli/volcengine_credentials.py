"""Credentials from the Volcengine tools' own conventions: VOLC_ACCESSKEY/VOLC_SECRETKEY,
VOLCENGINE_*, ~/.volc/credentials, ~/.volc/config and ~/.volcengine/config.json, read so
that keys already set up for the Volcengine SDKs and CLI work without `volccli config set`.
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass
class CredentialSet:
    access_key: str
    secret_key: str
    session_token: str
    source: str
    region: str = ""


def volcengine_credentials(
    env: Mapping[str, str], home: Path, notes: list[str]
) -> CredentialSet | None:
    """The first complete key pair among the conventions of the Volcengine SDKs and CLI."""
    for ak_var, sk_var, token_var in (
        ("VOLC_ACCESSKEY", "VOLC_SECRETKEY", ""),
        ("VOLCENGINE_ACCESS_KEY", "VOLCENGINE_SECRET_KEY", "VOLCENGINE_SESSION_TOKEN"),
    ):
        if env.get(ak_var) or env.get(sk_var):
            if not (env.get(ak_var) and env.get(sk_var)):
                notes.append(f"{ak_var} and {sk_var} must both be set; ignoring them")
                continue
            return CredentialSet(
                env[ak_var],
                env[sk_var],
                env.get(token_var, "") if token_var else "",
                f"env {ak_var}/{sk_var}",
                env.get("VOLCENGINE_REGION", ""),
            )
    for reader in (_volc_credentials_file, _volc_config_file, _volcengine_config_json):
        found = reader(env, home, notes)
        if found:
            return found
    return None


def _volc_credentials_file(
    env: Mapping[str, str], home: Path, notes: list[str]
) -> CredentialSet | None:
    path = home / ".volc" / "credentials"
    if not path.exists():
        return None
    import configparser  # here: only for this file, which few people have

    parser = configparser.ConfigParser()
    try:
        parser.read_string(path.read_text(encoding="utf-8"))
        section = parser["default"]
        return CredentialSet(
            section["access_key_id"],
            section["secret_access_key"],
            section.get("session_token", ""),
            f"file {path}",
        )
    except (OSError, UnicodeDecodeError) as exc:
        notes.append(f"cannot read {path} ({exc}); fix its permissions")
    except (configparser.Error, KeyError) as exc:
        notes.append(f"{path} has no [default] access_key_id/secret_access_key ({exc})")
    return None


def _volc_config_file(env: Mapping[str, str], home: Path, notes: list[str]) -> CredentialSet | None:
    path = home / ".volc" / "config"
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return CredentialSet(data["ak"], data["sk"], data.get("session_token", ""), f"file {path}")
    except (OSError, UnicodeDecodeError) as exc:
        notes.append(f"cannot read {path} ({exc}); fix its permissions")
    except (ValueError, KeyError, TypeError):
        notes.append(f'{path} is not JSON with "ak" and "sk"')
    return None


def _volcengine_config_json(
    env: Mapping[str, str], home: Path, notes: list[str]
) -> CredentialSet | None:
    path = home / ".volcengine" / "config.json"
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        name = env.get("VOLCENGINE_PROFILE") or data.get("current", "")
        profile = data["profiles"][name]
        if not (profile.get("access-key") and profile.get("secret-key")):
            notes.append(f"{path} profile {name!r} has no access-key/secret-key")
            return None
        return CredentialSet(
            profile["access-key"],
            profile["secret-key"],
            profile.get("session-token", ""),
            f"file {path} (profile {name!r})",
            profile.get("region", ""),
        )
    except (OSError, UnicodeDecodeError) as exc:
        notes.append(f"cannot read {path} ({exc}); fix its permissions")
    except (ValueError, KeyError, TypeError):
        notes.append(f"{path} has no usable current profile")
    return None
