"""The HTTP side of the sandbox: a threaded stdlib server, routing, and delivery of each
reply (normally, dropped, truncated or trickled). ``Sandbox`` is the public handle.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import re
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final

from .api import RESULTS_PATH, Engine, Incoming
from .config import KNOBS, SandboxConfig, apply_changes, copy_config, is_loopback_host
from .jsonbody import NotJson, loads
from .responses import Reply, json_reply, relay_reply, to_json

GATEWAY_PATH: Final = "/volcv/v1"
CONTROL_PREFIX: Final = "/__sandbox/"
_TRICKLE_TICK: Final = 0.05  # seconds between trickled writes
# Bodies above this get 413 even with no max_body set: a server must not try to hold
# whatever a Content-Length claims.
BODY_CEILING: Final = 1024 * 1024 * 1024
_READ_PIECE: Final = 1024 * 1024
_HEX: Final = re.compile(rb"[0-9A-Fa-f]+")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # bursts from a batch client must not be refused at connect

    def __init__(self, address: tuple[str, int], sandbox: Sandbox) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.sandbox = sandbox
        self.engine = sandbox.engine
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks up the host's FQDN, which can stall on DNS.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        self.engine.stats.connection()
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that went away (killed, or gave up waiting) is not the sandbox's error.
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)

    def close_connections(self) -> None:
        """End kept-alive connections too: after stop() nothing may answer."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "volccli-sandbox"
    sys_version = ""
    timeout = 300  # an idle kept-alive connection is closed after this many seconds
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Replies go out in one write; without this, Nagle's algorithm and delayed ACKs
        # can add 40 ms to a small request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        # The engine logs API requests itself when log_requests is on.
        return

    # --- routing ----------------------------------------------------------------------

    def do_GET(self) -> None:
        path = self.path.partition("?")[0]
        engine = self.server.engine
        if path.startswith(RESULTS_PATH):
            self._deliver(engine.download(path, self.headers))
        elif path == CONTROL_PREFIX + "stats":
            self._deliver(json_reply(200, engine.snapshot()))
        elif path == CONTROL_PREFIX + "config":
            self._deliver(json_reply(200, engine.config.knobs()))
        elif path == CONTROL_PREFIX + "health":
            self._deliver(json_reply(200, {"ok": True}))
        else:
            self._deliver(_not_found("GET", path))

    def do_POST(self) -> None:
        path, _, query = self.path.partition("?")
        if path.startswith(CONTROL_PREFIX):
            body = self._read_body()
            if body is not None:
                self._deliver(self._control(path, body))
            return
        style = "gateway" if path.rstrip("/") == GATEWAY_PATH else "official" if path == "/" else ""
        if not style:
            if self._read_body() is not None:
                self._deliver(_not_found("POST", path))
            return
        self._api(style, path, query)

    def _api(self, style: str, path: str, query: str) -> None:
        engine = self.server.engine
        host = self.headers.get("Host") or self.server.sandbox.address
        length = self._content_length()
        if length is None:
            return
        limit = engine.config.max_body
        if (limit and length > limit) or length > BODY_CEILING:
            # The body is left unread, so this connection cannot carry another request.
            self.close_connection = True
            incoming = Incoming("POST", path, query, self.headers, b"", style, host, 0)
            self._deliver(engine.too_large(incoming).reply)
            return
        body = self._read_body()
        if body is None:
            return
        in_flight = engine.in_flight.enter()
        try:
            incoming = Incoming("POST", path, query, self.headers, body, style, host, in_flight)
            handled = engine.handle(incoming)
        finally:
            # Before the reply is written: a client that waits for each answer before
            # sending the next request must never count twice.
            engine.in_flight.leave()
        self._deliver(handled.reply)

    def _control(self, path: str, body: bytes) -> Reply:
        if not _is_local(self.client_address[0]):
            return json_reply(403, {"error": "sandbox control is only allowed from loopback"})
        sandbox = self.server.sandbox
        if path == CONTROL_PREFIX + "reset":
            sandbox.reset()
            return json_reply(200, {"ok": True})
        if path == CONTROL_PREFIX + "config":
            try:
                changes = loads(body or b"{}")
            except NotJson:
                changes = None
            if not isinstance(changes, dict):
                return json_reply(400, {"error": "the body must be a JSON object of settings"})
            try:
                return json_reply(200, sandbox.apply_settings(changes))
            except ValueError as exc:
                return json_reply(400, {"error": str(exc)})
        return _not_found("POST", path)

    # --- reading ----------------------------------------------------------------------

    def _content_length(self) -> int | None:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return 0
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            self._deliver(relay_reply(400, "bad Content-Length", "bad_request"))
            return None
        return length

    def _read_body(self) -> bytes | None:
        """The request body (Content-Length or chunked); None after answering an error."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._read_chunked()
        length = self._content_length()
        if length is None:
            return None
        if length > BODY_CEILING:
            self.close_connection = True
            self._deliver(relay_reply(413, "request body too large", "request_body_too_large"))
            return None
        return self._read_exactly(length)

    def _read_exactly(self, length: int) -> bytes | None:
        """``length`` bytes, read as they arrive; None after answering a body cut short."""
        parts: list[bytes] = []
        left = length
        while left:
            piece = self.rfile.read(min(left, _READ_PIECE))
            if not piece:
                self.close_connection = True
                self._deliver(relay_reply(400, "body shorter than Content-Length", "bad_request"))
                return None
            parts.append(piece)
            left -= len(piece)
        return b"".join(parts)

    def _read_chunked(self) -> bytes | None:
        parts: list[bytes] = []
        while True:
            line = self.rfile.readline(1024)
            digits = line.split(b";", 1)[0].strip()
            # Hex digits only: int() would also take "-1" (and then read to EOF), "+5"
            # and "0x5".
            if not _HEX.fullmatch(digits):
                self.close_connection = True
                self._deliver(relay_reply(400, "bad chunked encoding", "bad_request"))
                return None
            size = int(digits, 16)
            if size == 0:
                while self.rfile.readline(1024).strip():
                    pass  # trailers
                return b"".join(parts)
            if size > BODY_CEILING - sum(map(len, parts)):
                self.close_connection = True
                self._deliver(relay_reply(413, "request body too large", "request_body_too_large"))
                return None
            chunk = self._read_exactly(size)
            if chunk is None:
                return None
            parts.append(chunk)
            self.rfile.readline(8)

    # --- writing ----------------------------------------------------------------------

    def _head(self, reply: Reply) -> bytes:
        phrase = self.responses.get(reply.status, ("",))[0]
        lines = [
            f"{self.protocol_version} {reply.status} {phrase}",
            f"Server: {self.version_string()}",
            f"Date: {self.date_time_string()}",
            f"Content-Type: {reply.content_type}",
            f"Content-Length: {len(reply.body)}",
            *(f"{name}: {value}" for name, value in reply.headers),
        ]
        if self.close_connection:
            lines.append("Connection: close")
        elif self.request_version == "HTTP/1.0":
            lines.append("Connection: keep-alive")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _deliver(self, reply: Reply) -> None:
        try:
            if reply.delivery == "drop":
                self.close_connection = True
            elif reply.delivery == "truncate":
                self.close_connection = True
                self.wfile.write(self._head(reply) + reply.body[: len(reply.body) // 2])
            elif reply.delivery == "trickle":
                self._trickle(reply)
            else:
                self.wfile.write(self._head(reply) + reply.body)
        except OSError:
            self.close_connection = True  # the client went away; nothing more to say

    def _trickle(self, reply: Reply) -> None:
        """Send slowly but steadily, so a per-read timeout never fires."""
        rate = max(1.0, float(self.server.engine.config.trickle_rate))
        step = max(1, int(rate * _TRICKLE_TICK))
        self.wfile.write(self._head(reply))
        for start in range(0, len(reply.body), step):
            chunk = reply.body[start : start + step]
            self.wfile.write(chunk)
            time.sleep(len(chunk) / rate)


def _not_found(method: str, path: str) -> Reply:
    return relay_reply(
        404, f"Invalid URL ({method} {path})", "not_found", kind="invalid_request_error"
    )


def _is_local(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


class Sandbox:
    """A local emulator of the visual API, served from a background daemon thread.

    >>> sandbox = Sandbox(SandboxConfig(port=0)).start()
    >>> sandbox.base_url  # doctest: +SKIP
    'http://127.0.0.1:40123'
    """

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self._config = config if config is not None else SandboxConfig()
        self._initial = copy_config(self._config)  # what reset() restores
        self.engine = Engine(self._config)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None  # kept after stop(), so the URL can still be named

    @property
    def config(self) -> SandboxConfig:
        """The live settings; changing a knob here takes effect on the next request."""
        return self._config

    def start(self) -> Sandbox:
        """Bind and serve in a daemon thread; returns once the port is listening."""
        if self._server is not None:
            raise RuntimeError("the sandbox is already running")
        host = self._config.host
        if not self._config.allow_remote and not is_loopback_host(host):
            raise ValueError(
                f"refusing to listen on {host}: not a loopback address "
                "(set allow_remote to serve other machines)"
            )
        self._server = _Server((host, self._config.port), self)
        self._port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="volccli-sandbox",
            daemon=True,
        )
        self._thread.start()
        return self

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the sandbox has not been started")
        return self._port

    @property
    def address(self) -> str:
        """host:port as a client on this machine should dial it."""
        host = self._config.host
        if host in ("", "0.0.0.0"):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"{host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"http://{self.address}"

    def stats(self) -> dict[str, Any]:
        """The JSON of ``GET /__sandbox/stats``."""
        return json.loads(to_json(self.engine.snapshot()))

    def reset(self) -> None:
        """Zero the counters, forget tasks, links and marker counts, and restore the
        fault settings given at construction."""
        for name in KNOBS:
            setattr(self._config, name, getattr(self._initial, name))
        self.engine.clear()

    def configure(self, **changes: object) -> dict[str, object]:
        """Change knobs at run time (as ``POST /__sandbox/config``); returns them all."""
        return self.apply_settings(changes)

    def apply_settings(self, changes: Mapping[str, object]) -> dict[str, object]:
        """``configure`` with the changes as a mapping: any key (``"self"`` included)
        is checked as a setting name."""
        applied = apply_changes(self._config, changes)
        if "fault_seed" in applied:
            self.engine.dice.reseed(self._config.fault_seed)
        if "qps" in applied:
            self.engine.bucket.reset()
        return self._config.knobs()

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        self._server = self._thread = None
        server.shutdown()
        server.close_connections()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def wait(self) -> None:
        """Block until stop() (or Ctrl-C in the calling thread)."""
        while self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout=0.5)

    def __enter__(self) -> Sandbox:
        return self.start() if self._server is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()
