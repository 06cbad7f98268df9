"""Validation: every problem in one run, each located at FILE:LINE:COL with its dotted path (issue 2)."""

from __future__ import annotations

import re

import pytest

from policy.errors import PolicyValidationError
from policy.load import check_policy, load_policy
from policy.locate import locate
from tests.policy.conftest import EXAMPLES

HEAD = 'schema = 1\nid = "acme"\nversion = 1\n'  # three lines, so problems below start at line 4

# (name, policy text, the exact first error line). Each is a mistake an administrator will make.
CASES: list[tuple[str, str, str]] = [
    (
        "bad duration",
        HEAD + '[presence]\nprotect_after = "5 minutes"\n',
        """p.toml:5:1: presence.protect_after: '5 minutes' is not a duration; write e.g. "90s", "5m" or "1h30m\"""",
    ),
    (
        "duration as a number",
        HEAD + "[presence]\nlock_after = 600\n",
        'p.toml:5:1: presence.lock_after: must be a duration string such as "5m", not an integer',
    ),
    (
        "stage order",
        HEAD + '[presence]\nwarn_after = "4m"\nprotect_after = "5m"\nlock_after = "3m"\n',
        "p.toml:7:1: presence.lock_after: must be longer than protect_after (5m): "
        "windows are covered before the session locks",
    ),
    (
        "warn after protect",
        HEAD + 'presence.warn_after = "6m"\n',
        "p.toml:4:10: presence.warn_after: must be shorter than protect_after (5m): "
        "the countdown warns before protection",
    ),
    (
        "bad regex in the second app",
        HEAD
        + '[[customer_apps]]\nname = "ok"\ntitle = "x"\n\n[[customer_apps]]\nname = "顧客台帳"\ntitle = "顧客(台帳"\n',
        "p.toml:10:1: customer_apps[1].title: invalid regular expression: "
        "missing ), unterminated subpattern at position 2",
    ),
    (
        "unknown key with a suggestion",
        HEAD + "[presence]\nlock_befor_sleep = true\n",
        "p.toml:5:1: presence.lock_befor_sleep: unknown key; did you mean 'lock_before_sleep'?",
    ),
    (
        "unknown section",
        HEAD + "[netwrk.vpn]\nmode = 'block'\n",
        "p.toml:4:1: netwrk: unknown key; did you mean 'network'?",
    ),
    (
        "enum",
        HEAD + '[network.wifi]\nuntrusted = "deny"\n',
        'p.toml:5:1: network.wifi.untrusted: must be one of "allow", "require_vpn", "block", not "deny"',
    ),
    (
        "CIDR with host bits inside an inline table",
        HEAD + 'network.vpn = { mode = "block", routes = ["10.0.0.0/8", "192.168.1.1/24"] }\n',
        "p.toml:4:57: network.vpn.routes[1]: '192.168.1.1/24' has host bits set; did you mean '192.168.1.0/24'?",
    ),
    (
        "not a CIDR",
        HEAD + '[network.vpn]\nroutes = [\n  "10.0.0.0/8",\n  "10.0.0.0/40",\n]\n',
        "p.toml:7:3: network.vpn.routes[1]: '10.0.0.0/40' is not a valid CIDR (e.g. 10.0.0.0/8 or fd00::/8)",
    ),
    (
        "TLS version in the second endpoint",
        HEAD + '[[network.tls]]\nurl = "https://a.example/"\n[[network.tls]]\nurl = "https://b.example/"\n'
        'min_version = "1.0"\n',
        'p.toml:8:1: network.tls[1].min_version: must be one of "1.2", "1.3", not "1.0"',
    ),
    (
        "http URL",
        HEAD + '[[network.tls]]\nurl = "http://crm.example/"\n',
        "p.toml:5:1: network.tls[0].url: 'http://crm.example/' is not allowed here; "
        'write the full https:// URL, e.g. "https://acme.my.salesforce.com/"',
    ),
    (
        "port out of range",
        HEAD + "[network.plaintext]\nforbidden_ports = [21, 0]\n",
        "p.toml:5:24: network.plaintext.forbidden_ports[1]: must be at least 1, not 0",
    ),
    (
        "mode typo",
        HEAD + '[device.firewall]\nmode = "blocking"\n',
        'p.toml:5:1: device.firewall.mode: must be one of "off", "report", "warn", "block", not "blocking"',
    ),
    (
        "missing required top-level key",
        'schema = 1\nid = "acme"\n',
        "p.toml:1:1: version: is required (add `version = ...`)",
    ),
    (
        "missing rule name",
        HEAD + '[[customer_apps]]\ntitle = "CRM"\n',
        "p.toml:4:1: customer_apps[0].name: is required (add `name = ...`)",
    ),
    (
        "app that matches everything",
        HEAD + '[[customer_apps]]\nname = "all"\n',
        "p.toml:4:1: customer_apps[0]: needs processes or title; otherwise every window would count as customer data",
    ),
    (
        "id pattern",
        'schema = 1\nid = "ACME Standard"\nversion = 1\n',
        "p.toml:2:1: id: 'ACME Standard' is not allowed here; use 1-64 lowercase letters, digits, '.', '_' or '-', "
        'e.g. "acme-standard"',
    ),
    (
        "version zero",
        'schema = 1\nid = "acme"\nversion = 0\n',
        "p.toml:3:1: version: must be at least 1, not 0",
    ),
    (
        "schema 2",
        'schema = 2\nid = "acme"\nversion = 1\n',
        "p.toml:1:1: schema: must be one of 1, not 2",
    ),
    (
        "expires without offset",
        HEAD + "expires = 2027-03-31T00:00:00\n",
        "p.toml:4:1: expires: must be a date-time with a UTC offset, e.g. 2027-03-31T00:00:00+09:00",
    ),
    (
        "acknowledgement without English text",
        HEAD + '[acknowledgement]\nrequired = true\ntext = { ja = "同意してください" }\n',
        "p.toml:6:1: acknowledgement.text.en: is required when acknowledgement.required = true",
    ),
    (
        "inhibitor typo in an array",
        HEAD + '[presence]\ninhibit_lock_when = ["fullscreen", "meeting"]\n',
        'p.toml:5:36: presence.inhibit_lock_when[1]: must be one of "fullscreen", "call", not "meeting"',
    ),
    (
        "pin that is not a SHA-256",
        HEAD + '[[network.tls]]\nurl = "https://a.example/"\npins = ["abc"]\n',
        "p.toml:6:9: network.tls[0].pins[0]: must be the base64 SHA-256 of a SubjectPublicKeyInfo "
        "(44 characters ending in '=')",
    ),
    (
        "wrong type: a table where a string belongs",
        HEAD + "[[screen_share.signatures]]\napp = { name = 'x' }\nprocesses = ['rec']\n",
        "p.toml:5:1: screen_share.signatures[0].app: must be a string, not a table",
    ),
    (
        "TOML syntax error",
        HEAD + "[presence\n",
        "p.toml:4:10: (top): TOML syntax error: Expected ']' at the end of a table declaration",
    ),
    (
        "https URL without a host",
        HEAD + '[[network.tls]]\nurl = "https:///path"\n',
        "p.toml:5:1: network.tls[0].url: 'https:///path' must be an https:// URL with a host name",
    ),
    (
        "empty rule name and unknown message key",
        HEAD + '[[customer_apps]]\nname = ""\ntitle = "CRM"\n[messages.en]\n"Remedy VPN" = "x"\n',
        "p.toml:5:1: customer_apps[0].name: must not be empty",
    ),
    (
        "heartbeat too short",
        HEAD + '[reporting]\nheartbeat = "1s"\n',
        "p.toml:5:1: reporting.heartbeat: '1s' is too short; use at least 10s",
    ),
]


@pytest.mark.parametrize(("text", "expected"), [(c[1], c[2]) for c in CASES], ids=[c[0] for c in CASES])
def test_invalid_policy_gives_the_located_line(text: str, expected: str) -> None:
    with pytest.raises(PolicyValidationError) as info:
        load_policy(text.encode(), "p.toml")
    lines = str(info.value).splitlines()
    assert lines[0] == expected


def test_there_are_at_least_a_dozen_cases() -> None:
    assert len(CASES) >= 12


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.toml")), ids=lambda p: p.name)
def test_examples_are_valid(example: object) -> None:
    from pathlib import Path

    assert isinstance(example, Path)
    policy, problems = check_policy(example.read_bytes())
    assert problems == []
    assert policy is not None


def test_both_examples_exist_and_say_what_the_issue_asks() -> None:
    standard = load_policy((EXAMPLES / "standard.toml").read_bytes())
    strict = load_policy((EXAMPLES / "strict.toml").read_bytes())
    assert standard.presence.protect_after == 300 and standard.presence.lock_after == 600
    assert standard.network.vpn.required_for_customer_apps
    assert standard.network.wifi.untrusted == "require_vpn"
    assert standard.network.tls and all(t.min_version in ("1.2", "1.3") for t in standard.network.tls)
    assert standard.acknowledgement.required
    assert standard.acknowledgement.text.ja and standard.acknowledgement.text.en
    names = [app.name for app in standard.customer_apps]
    assert {"Salesforce", "kintone"} <= set(names) and any("顧客台帳" in n for n in names)
    # strict really is stricter
    assert strict.presence.protect_after < standard.presence.protect_after
    assert strict.network.wifi.untrusted == "block"
    assert strict.enforcement.on_check_error == "block"


def test_all_problems_are_reported_in_one_run() -> None:
    text = (
        'schema = 1\nid = "Bad Id"\nversion = 0\n'
        '[presence]\ncover = "glass"\nlock_after = "ten minutes"\n'
        '[[customer_apps]]\nname = "x"\ntitle = "("\n'
        "[network.vpn]\nroutes = ['300.1.1.1/8']\n"
        "[reporting]\nwindow_titles = 'full'\n"
    )
    _, problems = check_policy(text.encode())
    assert [(p.line, p.path) for p in problems] == [
        (2, "id"),
        (3, "version"),
        (5, "presence.cover"),
        (6, "presence.lock_after"),
        (9, "customer_apps[0].title"),
        (11, "network.vpn.routes[0]"),
        (13, "reporting.window_titles"),
    ]


def test_unicode_title_regex_matches_japanese_titles() -> None:
    policy = load_policy((EXAMPLES / "standard.toml").read_bytes())
    [excel] = [a for a in policy.customer_apps if "Excel" in a.name]
    assert excel.title is not None
    assert excel.title.search("顧客台帳_2026年度.xlsx - Excel")
    assert not excel.title.search("見積書.xlsx - Excel")
    [salesforce] = [a for a in policy.customer_apps if a.name == "Salesforce"]
    assert salesforce.title is not None and salesforce.title.search(
        "Accounts | SALESFORCE"
    )  # case-insensitive


def test_not_utf8_is_located() -> None:
    _, problems = check_policy(HEAD.encode() + b'id2 = "\xff"\n')
    assert problems[0].format("p.toml").startswith("p.toml:4:8: (top): not UTF-8 text")


def test_bom_is_accepted() -> None:
    assert load_policy(b"\xef\xbb\xbf" + HEAD.encode()).id == "acme"


def test_locator_handles_tables_arrays_of_tables_dotted_keys_and_inline_tables() -> None:
    text = (
        "a = 1\n"  # 1
        'x.y.z = "v"\n'  # 2
        "[[customer_apps]]\n"  # 3
        'name = "a"\n'  # 4
        "[[customer_apps]]\n"  # 5
        "  'name' = \"b\"  # quoted key\n"  # 6
        'processes = ["p1", """p2"""]\n'  # 7
        "[network]\n"  # 8
        'vpn = { dns_canary = { name = "c", expect = ["1.1.1.1"] } }\n'  # 9
        "[[network.tls]]\n"  # 10
        's = """\nline ] [ { \n"""\n'  # 11-13
        "[[network.tls]]\n"  # 14
        "url = 'u' # [not.a.table]\n"  # 15
    )
    where = locate(text)
    assert where.find("x.y.z") == (2, 5)
    assert where.find("customer_apps[0].name") == (4, 1)
    assert where.find("customer_apps[1].name") == (6, 3)
    assert where.find("customer_apps[1].processes[1]") == (7, 20)
    assert where.find("network.vpn.dns_canary.expect[0]") == (9, 46)
    assert where.find("network.tls[1].url") == (15, 1)
    assert where.find("network.tls[1].missing") == (14, 1)  # falls back to the table
    assert where.find("nowhere") == (1, 1)
    assert not any(re.match(r"not\.a\.table", p) for p in where.positions)
