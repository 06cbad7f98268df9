"""A minimal authoritative DNS responder for the namespace tests: ``python -m tests.harness.netns_dnsserver NAME=IP...``.

Answers A queries for the given names (NXDOMAIN otherwise) on 0.0.0.0:53/udp of the namespace it runs in. It
plays the corporate DNS that is only reachable through the VPN.
"""

from __future__ import annotations

import socket
import struct
import sys


def answer(query: bytes, names: dict[str, str]) -> bytes:
    ident, _flags, qdcount = struct.unpack(">HHH", query[:6])
    pos = 12
    labels = []
    while query[pos]:
        length = query[pos]
        labels.append(query[pos + 1 : pos + 1 + length].decode("ascii", errors="replace"))
        pos += 1 + length
    qname_end = pos + 1
    qtype, _qclass = struct.unpack(">HH", query[qname_end : qname_end + 4])
    question = query[12 : qname_end + 4]
    name = ".".join(labels).lower()
    address = names.get(name)
    if address is None:
        return struct.pack(">HHHHHH", ident, 0x8183, qdcount, 0, 0, 0) + question  # NXDOMAIN
    if qtype != 1:  # only A records: empty NOERROR answer for AAAA etc.
        return struct.pack(">HHHHHH", ident, 0x8180, qdcount, 0, 0, 0) + question
    record = struct.pack(">HHHIH", 0xC00C, 1, 1, 60, 4) + socket.inet_aton(address)
    return struct.pack(">HHHHHH", ident, 0x8180, qdcount, 1, 0, 0) + question + record


def main(argv: list[str]) -> None:
    names = dict(arg.lower().split("=", 1) for arg in argv)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", 53))
    print("ready", flush=True)
    while True:
        data, peer = sock.recvfrom(512)
        try:
            sock.sendto(answer(data, names), peer)
        except (struct.error, IndexError):
            continue


if __name__ == "__main__":
    main(sys.argv[1:])
