"""A stand-in customer app: connects to the given host:port pairs (TLS for ports listed after --tls) and holds.

Run through a symlink to the Python executable named like the app (e.g. ``crm-client``) so that its process
name is what the policy's ``processes`` globs match.
"""

from __future__ import annotations

import socket
import ssl
import sys
import time


def main(argv: list[str]) -> None:
    tls_ports: set[int] = set()
    targets: list[tuple[str, int]] = []
    for arg in argv:
        if arg.startswith("--tls="):
            tls_ports = {int(p) for p in arg.removeprefix("--tls=").split(",")}
            continue
        address, _, number = arg.rpartition(":")
        targets.append((address, int(number)))
    held: list[socket.socket] = []
    for host, port in targets:
        sock = socket.create_connection((host, port), timeout=5)
        if port in tls_ports:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            sock = context.wrap_socket(sock, server_hostname=host)
        held.append(sock)
    print("connected", flush=True)
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main(sys.argv[1:])
