from __future__ import annotations

import re

from agent.decide.match import match_windows, process_matches, rule_matches
from agent.platform.base import Rect
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
