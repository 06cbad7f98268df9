"""Real local TLS servers on 127.0.0.1 for the TLS probe tests (one thread each, any number of handshakes)."""

from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path


class TlsServer:
    def __init__(
        self,
        cert: Path,
        key: Path,
        *,
        max_version: ssl.TLSVersion | None = None,
        min_version: ssl.TLSVersion | None = None,
        ciphers: str | None = None,
    ) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        if ciphers:
            self.context.set_ciphers(ciphers)
        if min_version is not None:
            self.context.minimum_version = min_version
        if max_version is not None:
            self.context.maximum_version = max_version
        self.context.load_cert_chain(cert, key)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(2.0)
            try:
                with self.context.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1)
            except (OSError, ssl.SSLError):
                pass
            finally:
                conn.close()

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
        self._thread.join(timeout=2)
