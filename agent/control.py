"""The local control endpoint of the running agent: ``mamori agent status`` and ``step-away`` talk to it.

One JSON request line, one JSON response line. POSIX: a Unix socket (``AgentConfig.control_socket``) created
with mode 0600 in the per-user state directory, so only the worker's own account can reach it. Windows
(no AF_UNIX in every Python build): TCP on 127.0.0.1 with a random token in ``agent.sock.port`` (0600), and
the token must accompany each request.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import selectors
import socket
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from agent.platform import HAS_UNIX_SOCKETS, unix_stream_socket
from core.errors import MamoriError

Handler = Callable[[Mapping[str, Any]], Mapping[str, Any]]
MAX_REQUEST = 64 * 1024


class ControlError(MamoriError):
    """The running agent cannot be reached."""

    exit_code = 3


def _use_unix() -> bool:
    return HAS_UNIX_SOCKETS


def _port_file(path: Path) -> Path:
    return path.with_name(path.name + ".port")


class ControlServer:
    def __init__(self, path: Path, handler: Handler) -> None:
        self.path = path
        self.handler = handler
        self._sock: socket.socket | None = None
        self._token = ""
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        # stop() writes to the second socket of the pair; the serve loop blocks (selectors) on the listening
        # socket and the first one, so it wakes up only for a connection or to stop (no polling timeout).
        # socketpair() is AF_UNIX on POSIX and a loopback TCP pair on Windows; both work with select().
        self._wake: tuple[socket.socket, socket.socket] | None = None

    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            if _use_unix():
                self._sock = self._bind_unix()
            else:
                self._sock = self._bind_tcp()
        except OSError as err:
            raise ControlError(f"cannot open the control socket {self.path}: {err.strerror}") from err
        self._sock.listen(8)
        self._sock.setblocking(False)  # accept() after select(): a client that gave up must not block it
        try:
            self._wake = socket.socketpair()
        except OSError as err:
            self._sock.close()
            raise ControlError(f"cannot open the control socket {self.path}: {err.strerror}") from err
        self._thread = threading.Thread(target=self._serve, name="mamori-control", daemon=True)
        self._thread.start()

    def _bind_unix(self) -> socket.socket:
        if self.path.exists():
            # A socket left by a crashed agent is removed; a live agent answers and keeps it.
            try:
                request(self.path, {"cmd": "ping"}, timeout=1.0)
            except ControlError:
                self.path.unlink()
            else:
                raise OSError(98, f"another agent is running on {self.path}")
        sock = unix_stream_socket()
        old = os.umask(0o177)
        try:
            sock.bind(str(self.path))
        except OSError:
            sock.close()
            raise
        finally:
            os.umask(old)
        return sock

    def _bind_tcp(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind(("127.0.0.1", 0))
            self._token = secrets.token_urlsafe(24)
            port_file = _port_file(self.path)
            tmp = port_file.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                json.dump({"port": sock.getsockname()[1], "token": self._token}, fh)
            os.replace(tmp, port_file)
        except OSError:
            sock.close()
            raise
        return sock

    def _serve(self) -> None:
        assert self._sock is not None and self._wake is not None
        with selectors.DefaultSelector() as selector:  # epoll/kqueue, select() on Windows
            try:
                selector.register(self._sock, selectors.EVENT_READ)
                selector.register(self._wake[0], selectors.EVENT_READ)
            except (OSError, ValueError):
                return  # closed under us
            self._accept_until_stopped(selector)

    def _accept_until_stopped(self, selector: selectors.BaseSelector) -> None:
        assert self._sock is not None and self._wake is not None
        while not self._stopping.is_set():
            try:
                ready = selector.select()
            except (OSError, ValueError):
                return  # closed under us
            if self._stopping.is_set() or any(key.fileobj is self._wake[0] for key, _ in ready):
                return
            try:
                conn, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                continue  # the client went away between select() and accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            try:
                raw = _recv_line(conn)
                req = json.loads(raw)
                if not isinstance(req, dict):
                    raise ValueError("request must be an object")
                if self._token and not secrets.compare_digest(str(req.get("token", "")), self._token):
                    reply: Mapping[str, Any] = {"ok": False, "error": "bad token"}
                elif req.get("cmd") == "ping":
                    reply = {"ok": True}
                else:
                    reply = self.handler(req)
            except (OSError, ValueError) as err:
                reply = {"ok": False, "error": f"bad request: {err}"}
            except Exception as err:  # the handler failed: answer, do not kill the server
                reply = {"ok": False, "error": f"internal error: {type(err).__name__}"}
            try:
                body = json.dumps(reply, ensure_ascii=False)
            except (TypeError, ValueError) as err:  # a status provider returned something not JSON
                body = json.dumps({"ok": False, "error": f"internal error: {type(err).__name__}"})
            with contextlib.suppress(OSError):
                conn.sendall(body.encode() + b"\n")

    def stop(self) -> None:
        self._stopping.set()
        if self._wake is not None:
            with contextlib.suppress(OSError):
                self._wake[1].send(b"x")
        if self._thread is not None:
            self._thread.join(timeout=2)
        if self._sock is not None:
            self._sock.close()
        if self._wake is not None:
            for end in self._wake:
                end.close()
        with contextlib.suppress(OSError):
            if _use_unix():
                self.path.unlink()
            else:
                _port_file(self.path).unlink()


def _recv_line(conn: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_REQUEST:
            raise ValueError("request too large")
    return data


def request(path: Path, message: Mapping[str, Any], timeout: float = 5.0) -> dict[str, Any]:
    """Send one request to the running agent and return its reply. Raises ControlError when unreachable."""
    hint = "is the agent running? start it with `mamori agent run` (or log in again)"
    body = dict(message)
    try:
        if _use_unix():
            sock = unix_stream_socket()
            try:
                sock.settimeout(timeout)
                sock.connect(str(path))
            except OSError:
                sock.close()  # no agent there: do not leak a descriptor per attempt (the agent pings at start)
                raise
        else:
            info = json.loads(_port_file(path).read_text())
            body["token"] = info["token"]
            sock = socket.create_connection(("127.0.0.1", int(info["port"])), timeout=timeout)
    except (OSError, ValueError, KeyError) as err:
        raise ControlError(
            f"cannot reach the agent at {path}: {getattr(err, 'strerror', None) or err}; {hint}"
        ) from err
    with sock:
        try:
            sock.sendall(json.dumps(body).encode() + b"\n")
            raw = _recv_line(sock)
        except (OSError, ValueError) as err:
            raise ControlError(f"the agent at {path} did not answer: {err}; {hint}") from err
    try:
        reply = json.loads(raw)
    except json.JSONDecodeError as err:
        raise ControlError(f"the agent at {path} sent an unreadable reply") from err
    if not isinstance(reply, dict):
        raise ControlError(f"the agent at {path} sent an unreadable reply")
    return reply
