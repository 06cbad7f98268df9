"""Plain TCP and TLS listeners for the namespace tests: ``python -m tests.harness.netns_servers PLAIN TLS CERT KEY``.

Binds 0.0.0.0 inside the namespace it runs in; each accepted connection is held open until the peer closes.
"""

from __future__ import annotations

import socket
import ssl
import sys
import threading


def hold(conn: socket.socket) -> None:
    with conn:
        try:
            while conn.recv(4096):
                pass
        except OSError:
            pass


def serve(sock: socket.socket, context: ssl.SSLContext | None) -> None:
    while True:
        conn, _ = sock.accept()
        if context is not None:
            try:
                conn = context.wrap_socket(conn, server_side=True)
            except (OSError, ssl.SSLError):
                conn.close()
                continue
        threading.Thread(target=hold, args=(conn,), daemon=True).start()


def main(argv: list[str]) -> None:
    plain_port, tls_port, cert, key = int(argv[0]), int(argv[1]), argv[2], argv[3]
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    plain = socket.create_server(("0.0.0.0", plain_port))
    tls = socket.create_server(("0.0.0.0", tls_port))
    threading.Thread(target=serve, args=(tls, context), daemon=True).start()
    print("ready", flush=True)
    serve(plain, None)


if __name__ == "__main__":
    main(sys.argv[1:])
