"""Policy acknowledgement: the pure decision, the store on disk, and the flow (cover + event)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from agent.i18n import Translator
from agent.report.stream import EventStream, Kind
from agent.ui.ack import AckFlow, Acknowledgement, AckStore, needs_ack, policy_summary
from core.clock import FakeClock
from policy.load import load_policy
from policy.model import Policy

T0 = datetime(2026, 4, 1, 9, 0, tzinfo=UTC)

POLICY = """
schema = 1
id = "standard"
version = {version}

[presence]
warn_after = "4m"
protect_after = "5m"
lock_after = "10m"

[[customer_apps]]
name = "CRM"
processes = ["chrome"]

[acknowledgement]
required = {required}
cover_until_acknowledged = {cover}
text = {{ ja = "顧客情報は社外に持ち出しません。", en = "I keep customer data inside the company." }}

[worker]
allow_pause = true
pause_max = "15m"
"""


def make_policy(version: int = 1, required: bool = True, cover: bool = True) -> Policy:
    text = POLICY.format(version=version, required=str(required).lower(), cover=str(cover).lower())
    return load_policy(text.encode())


def test_needs_ack_decision() -> None:
    acks = {"standard": Acknowledgement("standard", 2, T0)}
    assert needs_ack("standard", 3, True, acks)  # new version: ask again
    assert not needs_ack("standard", 2, True, acks)
    assert not needs_ack("standard", 1, True, acks)
    assert needs_ack("other", 1, True, acks)
    assert not needs_ack("other", 1, False, acks)


def test_store_round_trip_and_corrupt_file(tmp_path: Path) -> None:
    store = AckStore(tmp_path / "state")
    assert store.load() == {}
    store.record(Acknowledgement("standard", 2, T0))
    store.record(Acknowledgement("other", 1, T0))
    assert store.load()["standard"] == Acknowledgement("standard", 2, T0)
    assert sorted(json.loads(store.path.read_text())) == ["other", "standard"]
    # temp files were replaced, not left behind
    assert [p.name for p in store.path.parent.iterdir()] == ["acknowledgements.json"]
    store.path.write_text("{not json")
    assert store.load() == {}  # corrupt: ask again rather than assume acknowledged


class CoverSpy:
    def __init__(self) -> None:
        self.calls: list[bool] = []

    def __call__(self, active: bool) -> None:
        self.calls.append(active)


def test_flow_covers_until_acknowledged_and_reports(tmp_path: Path) -> None:
    stream = EventStream()
    events = stream.subscribe()
    cover = CoverSpy()
    shown: list[Policy] = []
    clock = FakeClock(T0)
    flow = AckFlow(AckStore(tmp_path), stream, clock, cover, shown.append)

    assert flow.on_policy(make_policy(1)) is True
    assert cover.calls == [True] and [p.version for p in shown] == [1]
    assert flow.pending()

    assert flow.acknowledge("standard", 2) is None  # a stale or forged answer changes nothing
    assert flow.acknowledge("standard", 1) is not None
    assert cover.calls == [True, False]
    event = events.get_nowait()
    assert event.kind is Kind.POLICY_ACKNOWLEDGED
    assert dict(event.data) == {"policy_id": "standard", "version": 1}
    assert event.time == T0
    assert not flow.pending()

    # Restart: the same version is not asked again; the next version is.
    flow2 = AckFlow(AckStore(tmp_path), stream, clock, cover, shown.append)
    assert flow2.on_policy(make_policy(1)) is False
    assert cover.calls[-1] is False
    assert flow2.on_policy(make_policy(2)) is True
    assert cover.calls[-1] is True and shown[-1].version == 2


def test_flow_without_cover_requirement(tmp_path: Path) -> None:
    cover = CoverSpy()
    flow = AckFlow(AckStore(tmp_path), EventStream(), FakeClock(T0), cover)
    assert flow.on_policy(make_policy(1, cover=False)) is True
    assert cover.calls == [False]
    assert flow.on_policy(make_policy(2, required=False)) is False


def test_summary_in_both_languages() -> None:
    policy = make_policy()
    en = policy_summary(Translator("en"), policy)
    ja = policy_summary(Translator("ja"), policy)
    assert en[0] == (
        "After 4 min without activity you are warned, after 5 min customer-data windows are covered, "
        "after 10 min the session locks."
    )
    assert "Apps treated as customer data: CRM" in en
    assert "You may pause protection for up to 15 min (reported)." in en
    assert ja[0].startswith("4 分間操作がないと警告し")
    assert "顧客データとして扱うアプリ: CRM" in ja
    assert ja[-1] == "キー入力・画面・ウィンドウ名は PC の外に送信されません。"


def test_summary_spells_mixed_durations_in_the_workers_language() -> None:
    # Before the fix 90 s fell through to the policy notation: "1m30s" inside a Japanese sentence.
    text = POLICY.format(version=1, required="true", cover="true").replace('"4m"', '"90s"')
    policy = load_policy(text.encode(), "test")
    assert policy_summary(Translator("ja"), policy)[0].startswith("1 分 30 秒間操作がないと警告し")
    assert policy_summary(Translator("en"), policy)[0].startswith("After 1 min 30 s without activity")


def test_a_failed_save_still_acknowledges_and_leaves_no_temp_file(tmp_path: Path) -> None:
    # Before the fix the AckStoreError went up into the dialog's button handler (the cover stayed, no event)
    # and the temp file of the failed write stayed in state_dir.
    store = AckStore(tmp_path)
    store.path.mkdir()  # os.replace onto a directory fails
    stream = EventStream()
    events = stream.subscribe()
    cover = CoverSpy()
    flow = AckFlow(store, stream, FakeClock(T0), cover)
    assert flow.on_policy(make_policy(1)) is True
    assert flow.acknowledge("standard", 1) is not None
    assert cover.calls == [True, False]
    assert events.get_nowait().kind is Kind.POLICY_ACKNOWLEDGED
    assert [p.name for p in tmp_path.iterdir()] == ["acknowledgements.json"]


def test_the_vpn_sentence_follows_the_vpn_mode() -> None:
    """Before: "only while the VPN is connected" under a policy whose VPN mode was "warn"."""
    base = POLICY.format(version=1, required="true", cover="true")
    for mode, en_text, ja_text in (
        ("warn", "You are warned when customer-data windows are open without the VPN.", "警告が表示されます"),
        (
            "block",
            "Customer-data windows are shown only while the VPN is connected.",
            "VPN に接続している間だけ",
        ),
    ):
        policy = load_policy((base + f'\n[network.vpn]\nmode = "{mode}"\n').encode())
        en = policy_summary(Translator("en"), policy)
        assert en_text in en
        assert any(ja_text in line for line in policy_summary(Translator("ja"), policy))
        if mode == "warn":
            assert not any("only while" in line for line in en)


def test_what_changed_since_the_acknowledged_version(tmp_path: Path) -> None:
    from agent.ui.ack import summary_facts, what_changed

    store = AckStore(tmp_path)
    stream = EventStream()
    flow = AckFlow(store, stream, FakeClock(T0), lambda _on: None)
    flow.on_policy(make_policy(1))
    flow.acknowledge("standard", 1)
    previous = flow.acknowledged("standard")
    assert previous is not None and previous.facts == summary_facts(Translator("en"), make_policy(1))
    assert AckStore(tmp_path).load()["standard"].facts == previous.facts  # kept on disk

    text = POLICY.format(version=2, required="true", cover="true")
    newer = load_policy(
        text.replace('lock_after = "10m"', 'lock_after = "8m"')
        .replace("allow_pause = true", "allow_pause = false")
        .encode()
    )
    en = what_changed(Translator("en"), newer, previous.facts)
    assert en == [
        "After 4 min without activity you are warned, after 5 min customer-data windows are covered, "
        "after 8 min the session locks.",
        "No longer part of the policy: pausing protection.",
    ]
    assert (
        what_changed(Translator("ja"), newer, previous.facts)[1]
        == "「保護の一時停止」の項目はなくなりました。"
    )
    assert what_changed(Translator("en"), make_policy(2), previous.facts) == []  # only the wording changed


def test_the_dialog_names_the_policy_by_its_title() -> None:
    from agent.ui.ack import policy_title

    text = POLICY.format(version=3, required="true", cover="true")
    text = text.replace(
        "version = 3\n", 'version = 3\ntitle = { ja = "リモートワーク基本方針", en = "Remote-work basics" }\n'
    )
    policy = load_policy(text.encode())
    assert policy_title(policy, "ja") == "リモートワーク基本方針"
    assert policy_title(policy, "en") == "Remote-work basics"
    assert policy_title(make_policy(), "ja") == "standard"  # no title: the id
    assert (
        Translator("ja")("ack.heading", title="リモートワーク基本方針", version=3)
        == "リモートワーク基本方針 (第 3 版)"
    )
