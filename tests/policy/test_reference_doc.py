"""docs/policy-reference.md is generated from the schema; the committed copy must be current."""

from __future__ import annotations

import re
from pathlib import Path

from policy.reference import generate_reference
from policy.schema import policy_schema

DOC = Path(__file__).resolve().parents[2] / "docs" / "policy-reference.md"


def test_committed_reference_equals_the_generated_one() -> None:
    assert DOC.read_text(encoding="utf-8") == generate_reference(), (
        "docs/policy-reference.md is stale: run `python -m policy.reference > docs/policy-reference.md`"
    )


def test_reference_mentions_every_field() -> None:
    schema = policy_schema()
    text = generate_reference()
    names: set[str] = set(schema["properties"])
    for definition in schema["$defs"].values():
        names |= set(definition["properties"])
    # a plain field is a table row; a table-valued field is a section heading such as "## [network.vpn]"
    missing = [
        n
        for n in sorted(names)
        if f"| `{n}` |" not in text and not re.search(rf"^## \[\[?([a-z_]+\.)*{n}\]", text, re.MULTILINE)
    ]
    assert missing == []
    for section in (
        "[presence]",
        "[[customer_apps]]",
        "[network.vpn]",
        "[[network.tls]]",
        "[acknowledgement]",
    ):
        assert f"## {section}" in text
