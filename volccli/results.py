"""Result images out of an answer: base64 decoded, or URLs downloaded at once.

Downloads are streamed to a temp file beside their final place, capped in size and
time, http(s) only, from a session that carries no credentials of any kind: no
Authorization header, no cookies, no .netrc.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .digest import file_sha256
from .errors import NetworkError, OutputError
from .images import sniff_extension

MAX_DOWNLOAD_BYTES = 200 * 1024 * 1024
DOWNLOAD_ATTEMPTS = 3
_CHUNK = 256 * 1024


@dataclass
class RawResult:
    """One returned image: bytes in memory (base64) or a downloaded temp file."""

    index: int
    data: bytes | None = None
    path: Path | None = None
    url: str = ""

    def head(self) -> bytes:
        if self.data is not None:
            return self.data[:16]
        assert self.path is not None
        with self.path.open("rb") as handle:
            return handle.read(16)

    @property
    def ext(self) -> str:
        return sniff_extension(self.head())

    def sha256(self) -> str:
        if self.data is not None:
            return hashlib.sha256(self.data).hexdigest()
        assert self.path is not None
        return file_sha256(self.path)

    def take(self) -> Path:
        """Hand over the downloaded file: the caller now owns (and removes) it."""
        assert self.path is not None
        path, self.path = self.path, None
        return path

    def discard(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)


def returned_images(data: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(base64 strings, URLs) of an answer's data, either list possibly empty."""
    encoded = [item for item in (data.get("binary_data_base64") or []) if item]
    urls = [item for item in (data.get("image_urls") or []) if item]
    return encoded, urls


def decode_base64(items: list[str]) -> list[RawResult]:
    out = []
    for index, item in enumerate(items):
        if not isinstance(item, str):
            raise _bad_answer(f"binary_data_base64[{index}] is not a string")
        try:
            data = base64.b64decode(item, validate=True)
        except (binascii.Error, ValueError):
            raise _bad_answer(f"binary_data_base64[{index}] is not valid base64") from None
        if not sniff_extension(data[:16]):
            raise _bad_answer(f"binary_data_base64[{index}] is not an image")
        out.append(RawResult(index, data=data))
    return out


def _bad_answer(what: str) -> NetworkError:
    return NetworkError(
        f"the answer is damaged: {what}",
        "run the command again later; the request was probably billed",
        maybe_billed=True,
    )


def download(
    url: str,
    index: int,
    folder: Path,
    *,
    timeout: float,
    connect_timeout: float,
    max_bytes: int = MAX_DOWNLOAD_BYTES,
) -> RawResult:
    """Fetch one result URL into a temp file in ``folder``."""
    from .output import temp_file

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise NetworkError(
            f"result URL {url[:80]!r} is not http(s)",
            "the answer is not usable; contact support with the request id",
        )
    last: NetworkError | None = None
    for attempt in range(1, DOWNLOAD_ATTEMPTS + 1):
        path = temp_file(folder)
        try:
            _fetch(url, path, timeout=timeout, connect_timeout=connect_timeout, max_bytes=max_bytes)
            return RawResult(index, path=path, url=url)
        except NetworkError as error:
            path.unlink(missing_ok=True)
            last = error
            if error.retry != "safe" or attempt == DOWNLOAD_ATTEMPTS:
                raise
            time.sleep(0.5 * attempt)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
    assert last is not None
    raise last


def _fetch(url: str, path: Path, *, timeout: float, connect_timeout: float, max_bytes: int) -> None:
    import requests

    from .client import arriving, environment_settings, new_session

    deadline = time.monotonic() + timeout
    with new_session() as session:
        try:
            response = session.get(
                url,
                stream=True,
                timeout=(connect_timeout, timeout),
                allow_redirects=True,
                **environment_settings(url),
            )
        except requests.exceptions.RequestException as exc:
            raise NetworkError(
                f"cannot download the result ({type(exc).__name__})",
                "check the network; the URL is valid for about an hour",
                retry="safe",
            ) from None
        with response:
            if response.status_code in (401, 403, 404, 410):
                raise NetworkError(
                    f"the result URL has expired or is gone (HTTP {response.status_code})",
                    "result URLs expire (about an hour); run again without --return-url (in a "
                    "batch, the rows' return_url) to get base64 results",
                )
            if response.status_code != 200:
                raise NetworkError(
                    f"downloading the result failed (HTTP {response.status_code})",
                    "retry later",
                    retry="safe" if response.status_code >= 500 else "never",
                )
            declared = int(response.headers.get("Content-Length") or 0)
            if declared > max_bytes:
                raise NetworkError(
                    f"the result is {declared} bytes, above the download cap",
                    "this is not an image of the API",
                )
            size = 0
            try:
                with path.open("wb") as handle:
                    for chunk in arriving(response, _CHUNK):
                        size += len(chunk)
                        if size > max_bytes:
                            raise NetworkError(
                                "the result is larger than the download cap",
                                "this is not an image of the API",
                            )
                        if time.monotonic() > deadline:
                            raise NetworkError(
                                "the download was too slow and was abandoned",
                                "raise --timeout or check the network",
                            )
                        handle.write(chunk)
            except requests.exceptions.RequestException as exc:
                raise NetworkError(
                    f"the download broke off ({type(exc).__name__})", "retry later", retry="safe"
                ) from None
            except (ConnectionError, TimeoutError) as exc:  # a socket's, not the disk's
                raise NetworkError(
                    f"the download broke off ({type(exc).__name__})", "retry later", retry="safe"
                ) from None
            except OSError as exc:  # the disk, not the network: a full --output-dir
                raise OutputError(
                    f"cannot write the downloaded result to {path.parent} ({exc.strerror})",
                    "free some space or choose another --output-dir; the URL stays valid "
                    "for about an hour",
                ) from None
    if not sniff_extension(_head(path)):
        raise NetworkError(
            "the downloaded result is not an image",
            "the URL may have expired; run the command again",
        )


def _head(path: Path) -> bytes:
    with path.open("rb") as handle:
        return handle.read(16)
