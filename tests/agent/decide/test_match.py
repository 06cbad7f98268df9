from __future__ import annotations

import re

from agent.decide.match import identity, match_windows, process_matches, rule_matches, rule_patterns
from agent.platform.base import Rect, Window
from policy.model import CustomerApp
from tests.harness.fakes import policy, window


def test_process_globs_are_case_insensitive_and_exe_optional() -> None:
    assert process_matches("excel", "EXCEL.EXE")
    assert process_matches("msedge.exe", "msedge")
    assert process_matches("firefox*", "firefox-esr")
    assert not process_matches("chrome", "chromium")
    assert not process_matches("chrome", "")


def test_rules_need_process_and_title() -> None:
    rules = policy().customer_apps
    wins = [
        window(1, "Account 42 | Salesforce - Google Chrome", "chrome"),
        window(2, "Salesforce docs", "evince"),  # title matches, process does not
        window(3, "顧客台帳.xlsx - Excel", "EXCEL"),
        window(4, "Budget.xlsx - Excel", "excel"),  # process matches, title does not
    ]
    found = match_windows(rules, wins)
    assert [(m.window.id, m.rule) for m in found] == [(1, "crm"), (3, "ledger")]


def test_full_width_title_matches_after_nfkc() -> None:
    rule = CustomerApp(name="crm", title=re.compile("salesforce", re.IGNORECASE))
    assert rule_matches(rule, window(1, "Ｓａｌｅｓｆｏｒｃｅ - 取引先", "chrome"))


def test_minimized_and_empty_windows_are_not_covered() -> None:
    rules = policy().customer_apps
    wins = [
        window(1, "Salesforce", "chrome", minimized=True),
        window(2, "Salesforce", "chrome", rect=Rect(0, 0, 0, 0)),
    ]
    assert match_windows(rules, wins) == []


def test_rule_without_processes_matches_any_process() -> None:
    rule = CustomerApp(name="any", title=re.compile("顧客"))
    assert rule_matches(rule, window(1, "顧客一覧", "whatever"))
    assert not rule_matches(rule, window(2, "Inbox", "whatever"))


def test_browsers_family_matches_real_executable_names_on_every_os() -> None:
    rule = CustomerApp(name="crm", families=("browsers",), title=re.compile("Salesforce"))
    for name in ("chromium", "firefox-esr", "chrome.exe", "msedge.exe", "Google Chrome", "Safari", "brave"):
        assert rule_matches(rule, window(1, "Salesforce - Lightning Experience", name)), name
    assert not rule_matches(rule, window(1, "Salesforce - Lightning Experience", "evince"))
    assert not rule_matches(rule, window(1, "Budget", "chromium"))


def test_spreadsheets_family_matches_libreoffice_calc() -> None:
    rule = CustomerApp(name="ledger", families=("spreadsheets",), title=re.compile("顧客台帳"))
    assert rule_matches(rule, window(1, "顧客台帳.ods - LibreOffice Calc", "soffice.bin"))
    assert rule_matches(rule, window(1, "顧客台帳.xlsx - Excel", "EXCEL.EXE"))


def test_families_and_processes_add_up() -> None:
    rule = CustomerApp(name="crm", processes=("acmecrm*",), families=("browsers",))
    assert rule_matches(rule, window(1, "x", "acmecrm-client"))
    assert rule_matches(rule, window(1, "x", "vivaldi-bin"))
    assert rule_patterns(rule)[0] == "acmecrm*"


def test_window_without_process_falls_back_to_wm_class() -> None:
    rule = CustomerApp(name="ledger", processes=("xmessage",), title=re.compile("顧客台帳"))
    unknown = Window(
        id=9, title="顧客台帳", pid=None, process_name="", rect=Rect(0, 0, 10, 10), wm_class="Xmessage"
    )
    assert identity(unknown) == ("wm_class", "Xmessage")
    assert rule_matches(rule, unknown)
    # A known process wins over the class: a class is only a stated fallback.
    known = Window(
        id=9, title="顧客台帳", pid=5, process_name="evince", rect=Rect(0, 0, 10, 10), wm_class="Xmessage"
    )
    assert identity(known) == ("process", "evince")
    assert not rule_matches(rule, known)
    nothing = Window(id=9, title="顧客台帳", pid=None, process_name="", rect=Rect(0, 0, 10, 10))
    assert identity(nothing) == ("", "") and not rule_matches(rule, nothing)


def test_every_policy_family_has_executables() -> None:
    from agent.decide.match import FAMILIES
    from policy.model import APP_FAMILIES

    assert set(FAMILIES) == set(APP_FAMILIES)
    assert all(FAMILIES[f] for f in APP_FAMILIES)


def test_example_policies_cover_debian_browsers_and_libreoffice() -> None:
    from pathlib import Path

    from policy.load import load_policy

    root = Path(__file__).resolve().parents[3] / "policy" / "examples"
    for name in ("standard.toml", "strict.toml"):
        rules = load_policy((root / name).read_bytes(), name).customer_apps
        wins = [
            window(1, "Salesforce - Lightning Experience - Chromium", "chromium"),
            window(2, "Salesforce - Lightning Experience — Mozilla Firefox", "firefox-esr"),
            window(3, "顧客台帳.ods - LibreOffice Calc", "soffice.bin"),
            window(4, "notes.txt - gedit", "gedit"),
        ]
        assert [m.window.id for m in match_windows(rules, wins)] == [1, 2, 3], name
