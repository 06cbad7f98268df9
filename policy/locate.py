"""Map dotted policy paths to FILE:LINE:COL positions in TOML text (issue 2: located validation errors).

tomllib gives values without positions, so this is a small scanner over the same text. It is only run on
text tomllib already accepted, so it can be lenient. It records, for every path it sees, where the key (or
the array element, or the table header) starts:

- ``[a.b]`` tables and ``[[a.b]]`` arrays of tables (``a.b[2]`` for the third), including sub-tables of the
  current array element;
- ``key = value`` with bare, quoted and dotted keys (``a.b = 1`` records ``a`` and ``a.b``);
- inline tables ``{ k = v }`` and arrays ``[v, v]`` (``key[i]``), across lines, with comments.

Paths use the same spelling as :mod:`policy.load`: ``network.tls[0].url``, ``customer_apps[1].title``.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

_BARE = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


@dataclass
class Locations:
    """path -> (line, col), 1-based."""

    positions: dict[str, tuple[int, int]] = field(default_factory=dict)

    def find(self, path: str) -> tuple[int, int]:
        """Position of ``path``, else of its nearest recorded ancestor (a missing key -> its table), else 1:1."""
        while True:
            if path in self.positions:
                return self.positions[path]
            if not path:
                return (1, 1)
            path = _parent(path)


def _parent(path: str) -> str:
    cut = max(path.rfind("."), path.rfind("["))
    return path[: max(cut, 0)]


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.i = 0
        self.n = len(text)
        self.line_starts = [0] + [k + 1 for k, ch in enumerate(text) if ch == "\n"]
        self.out = Locations()
        # array-of-tables key tuple -> index of its current element
        self.aot: dict[tuple[str, ...], int] = {}

    # -- positions ---------------------------------------------------------------------------------------------
    def pos(self, index: int) -> tuple[int, int]:
        line = bisect.bisect_right(self.line_starts, index)
        return line, index - self.line_starts[line - 1] + 1

    def record(self, path: str, index: int) -> None:
        if path and path not in self.out.positions:
            self.out.positions[path] = self.pos(index)

    # -- lexing --------------------------------------------------------------------------------------------------
    def peek(self, k: int = 0) -> str:
        j = self.i + k
        return self.text[j] if j < self.n else ""

    def skip_ws(self, newlines: bool = False) -> None:
        while self.i < self.n:
            ch = self.text[self.i]
            if ch in " \t\r" or (newlines and ch == "\n"):
                self.i += 1
            elif ch == "#" and newlines:
                self.skip_comment()
            else:
                return

    def skip_comment(self) -> None:
        while self.i < self.n and self.text[self.i] != "\n":
            self.i += 1

    def skip_to_eol(self) -> None:
        self.skip_comment()

    def read_string(self) -> str:
        quote = self.text[self.i]
        if self.text.startswith(quote * 3, self.i):
            end = self.text.find(quote * 3, self.i + 3)
            end = self.n if end < 0 else end
            while end + 3 < self.n and self.text[end + 3] == quote:  # up to two quotes may end a body
                end += 1
            value = self.text[self.i + 3 : end]
            self.i = end + 3
            return value
        j = self.i + 1
        chars: list[str] = []
        while j < self.n and self.text[j] != quote and self.text[j] != "\n":
            if quote == '"' and self.text[j] == "\\" and j + 1 < self.n:
                chars.append(self.text[j : j + 2])
                j += 2
                continue
            chars.append(self.text[j])
            j += 1
        self.i = j + 1
        raw = "".join(chars)
        if quote == '"' and "\\" in raw:
            try:
                return raw.encode("utf-8").decode("unicode_escape").encode("latin-1").decode("utf-8")
            except (UnicodeDecodeError, UnicodeEncodeError):
                return raw
        return raw

    def read_key(self) -> list[tuple[str, int]]:
        """A possibly dotted key -> [(part, start index)]."""
        parts: list[tuple[str, int]] = []
        while True:
            self.skip_ws()
            start = self.i
            if self.peek() in ('"', "'"):
                parts.append((self.read_string(), start))
            else:
                while self.i < self.n and self.text[self.i] in _BARE:
                    self.i += 1
                parts.append((self.text[start : self.i], start))
            self.skip_ws()
            if self.peek() == ".":
                self.i += 1
                continue
            return parts

    # -- paths ----------------------------------------------------------------------------------------------------
    def table_path(self, keys: tuple[str, ...]) -> str:
        """Spell a table key tuple as a path, adding the current index of every array of tables on the way."""
        path = ""
        for depth in range(1, len(keys) + 1):
            path = _join(path, keys[depth - 1])
            index = self.aot.get(keys[:depth])
            if index is not None:
                path = f"{path}[{index}]"
        return path

    # -- grammar --------------------------------------------------------------------------------------------------
    def scan(self) -> Locations:
        current = ""
        while True:
            self.skip_ws(newlines=True)
            if self.i >= self.n:
                return self.out
            ch = self.peek()
            if ch == "[":
                current = self.header()
            else:
                self.keyval(current)
            self.skip_ws()
            if self.peek() == "#":
                self.skip_comment()

    def header(self) -> str:
        start = self.i
        double = self.peek(1) == "["
        self.i += 2 if double else 1
        parts = self.read_key()
        self.i += 2 if double else 1
        keys = tuple(p for p, _ in parts)
        if double:
            self.aot[keys] = self.aot.get(keys, -1) + 1
            for other in [k for k in self.aot if len(k) > len(keys) and k[: len(keys)] == keys]:
                del self.aot[other]  # a new element starts its nested arrays afresh
        # record every implicit parent table at the header too
        for depth in range(1, len(keys)):
            self.record(self.table_path(keys[:depth]), start)
        path = self.table_path(keys)
        self.record(path, start)
        if double:
            self.record(path.rsplit("[", 1)[0], start)
        return path

    def keyval(self, table: str) -> None:
        parts = self.read_key()
        path = table
        for part, start in parts:
            path = _join(path, part)
            self.record(path, start)
        self.skip_ws()
        if self.peek() == "=":
            self.i += 1
        self.skip_ws()
        self.value(path)

    def value(self, path: str) -> None:
        ch = self.peek()
        if ch in ('"', "'"):
            self.read_string()
        elif ch == "[":
            self.array(path)
        elif ch == "{":
            self.inline_table(path)
        else:
            while self.i < self.n and self.text[self.i] not in ",]}\n#":
                self.i += 1

    def array(self, path: str) -> None:
        self.i += 1
        index = 0
        while self.i < self.n:
            self.skip_ws(newlines=True)
            if self.peek() == "]":
                self.i += 1
                return
            if self.peek() == ",":
                self.i += 1
                continue
            element = f"{path}[{index}]"
            self.record(element, self.i)
            before = self.i
            self.value(element)
            if self.i == before:  # defensive: never loop on unexpected text
                self.i += 1
            index += 1

    def inline_table(self, path: str) -> None:
        self.i += 1
        while self.i < self.n:
            self.skip_ws(newlines=True)
            if self.peek() == "}":
                self.i += 1
                return
            if self.peek() == ",":
                self.i += 1
                continue
            before = self.i
            self.keyval(path)
            if self.i == before:
                self.i += 1


def locate(text: str) -> Locations:
    """Scan TOML ``text`` (already accepted by tomllib) and return where each dotted path is written."""
    return _Scanner(text).scan()
