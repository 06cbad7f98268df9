"""Watching the guard process write: strace over every syscall that can put bytes on a disk.

To write a file a process must open it for writing (open/openat/creat with O_WRONLY, O_RDWR, O_CREAT or O_TRUNC),
or make, rename, link or truncate a path; so those calls, and every write to an fd other than the stdout and
stderr pipes, are what :func:`disk_writes` reports. The trace follows threads and children (-f).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

SYSCALLS = (
    "open,openat,openat2,creat,mkdir,mkdirat,rename,renameat,renameat2,link,linkat,symlink,symlinkat,"
    "unlink,unlinkat,truncate,ftruncate,write,pwrite64,writev,pwritev,pwritev2,sendfile,copy_file_range,"
    "memfd_create,mknod,mknodat"
)
ALWAYS_A_WRITE = {
    "creat",
    "mkdir",
    "mkdirat",
    "rename",
    "renameat",
    "renameat2",
    "link",
    "linkat",
    "symlink",
    "symlinkat",
    "unlink",
    "unlinkat",
    "truncate",
    "ftruncate",
    "sendfile",
    "copy_file_range",
    "mknod",
    "mknodat",
}
WRITE_FLAGS = re.compile(r"O_WRONLY|O_RDWR|O_CREAT|O_TRUNC|O_APPEND")
LINE = re.compile(r"^(?:\[pid\s+)?(\d+)\]?\s+(\w+)\((.*)$")
ALLOWED_FDS = {"1", "2"}  # the stdout and stderr pipes to the agent


def strace_wrap(log: Path) -> list[str]:
    """The command prefix that runs the guard under strace, logging to ``log``."""
    if shutil.which("strace") is None:
        pytest.skip("strace not installed (Debian package strace; .ci/run installs it)")
    return ["strace", "-f", "-qq", "--seccomp-bpf", "-o", str(log), "-e", f"trace={SYSCALLS}"]


def disk_writes(log: Path) -> list[str]:
    """Every traced call that wrote, or could have written, to a file (empty: nothing touched the disk)."""
    found = []
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        match = LINE.match(line)
        if match is None:
            continue
        name, args = match.group(2), match.group(3)
        opens_for_writing = name in ("open", "openat", "openat2") and WRITE_FLAGS.search(args) is not None
        writes_a_file = name.startswith(("write", "pwrite")) and args.split(",", 1)[0] not in ALLOWED_FDS
        if name in ALWAYS_A_WRITE or opens_for_writing or writes_a_file:
            found.append(line)  # memfd_create is traced but is memory, not disk
    return found


def traced_calls(log: Path) -> int:
    """How many calls the trace holds (a trace of nothing proves nothing)."""
    return sum(
        1 for line in log.read_text(encoding="utf-8", errors="replace").splitlines() if LINE.match(line)
    )
