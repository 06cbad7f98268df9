"""SIEM forwarders: each format checked by a protocol-faithful receiver, every event delivered from the durable
outbox, a broken event as a counted dead letter that blocks nothing, retries through a receiver outage,
back-pressure, server.toml parsing, and syslog over TLS to a real rsyslog."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from agent.report.events import build_record, rule_context, stamp_device
from agent.report.stream import AgentEvent, Kind
from core.clock import SystemClock
from server import forward_store
from server.forwarders import (
    ForwarderConfig,
    ForwardingService,
    octet_counted,
    syslog_message,
)
from server.settings import SettingsError, load_settings
from server.storage import EventRow, Storage, devices
from tests.harness.pki import TestCA
from tests.server.receivers import HEC_TOKEN, WEBHOOK_SECRET, Receivers

DEVICE = "dev-forward"
START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)

SAMPLES: list[tuple[Kind, dict[str, Any]]] = [
    (Kind.POSTURE_FINDING, {"check_id": "vpn", "status": "fail", "mode": "block", "enforcement": "block"}),
    (Kind.PROTECTION_APPLIED, {"reason": "away", "rules": ["crm"], "count": 1}),
    (Kind.SESSION_LOCKED, {"method": "logind"}),
    (Kind.VPN_DOWN, {"interface": "tun0"}),
    (Kind.AGENT_STARTED, {}),
]


def records(n: int, first_seq: int = 1) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        kind, data = SAMPLES[i % len(SAMPLES)]
        record = build_record(
            AgentEvent(kind, START + timedelta(seconds=first_seq + i), data), rule_context(["crm"])
        )
        record["metadata"]["sequence"] = first_seq + i
        out.append(stamp_device(record, DEVICE, type_id=3))
    return out


def store(storage: Storage, batch: list[dict[str, Any]]) -> list[str]:
    with storage.write() as conn:
        if conn.execute(devices.select().where(devices.c.id == DEVICE)).first() is None:
            conn.execute(
                devices.insert().values(id=DEVICE, token_hash="f" * 64, group_name="default", enrolled_at=0)
            )
    rows = [
        EventRow(
            r["metadata"]["uid"],
            r["metadata"]["sequence"],
            r["class_uid"],
            r["type_uid"],
            r["severity_id"],
            r["metadata"]["event_code"],
            r["time"],
            json.dumps(r),
        )
        for r in batch
    ]
    storage.ingest(DEVICE, rows, 0)
    return [r.uid for r in rows]


def http_configs(receivers: Receivers) -> list[ForwarderConfig]:
    return [
        ForwarderConfig("hec", "splunk_hec", {"url": receivers.url, "token": HEC_TOKEN}, batch=7),
        ForwarderConfig("otlp", "otlp_http", {"url": receivers.url}, batch=7),
        ForwarderConfig("es", "elasticsearch", {"url": receivers.url, "index": "mamori"}, batch=7),
        ForwarderConfig(
            "hook", "webhook", {"url": receivers.url + "/hook", "secret": WEBHOOK_SECRET}, batch=7
        ),
    ]


@pytest.fixture
def receivers() -> Iterator[Receivers]:
    r = Receivers().start()
    yield r
    r.stop()


def drain(service: ForwardingService, storage: Storage, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        service.step()
        counts = forward_store.counts(storage)
        if forward_store.pending_capture(storage) == 0 and all(c.queued == 0 for c in counts.values()):
            return
        time.sleep(0.02)
    raise AssertionError(f"not drained: {forward_store.counts(storage)}")


def test_each_forwarder_delivers_every_event_once_in_its_format(
    storage: Storage, receivers: Receivers
) -> None:
    service = ForwardingService(storage, http_configs(receivers), SystemClock())
    forward_store.set_capture(storage, True)
    uids = store(storage, records(40))
    drain(service, storage)
    assert receivers.errors == []
    for name, got in (("hec", receivers.hec), ("otlp", receivers.otlp), ("webhook", receivers.webhook)):
        assert dict(got) == dict.fromkeys(uids, 1), name
    assert set(receivers.elastic) == set(uids) and receivers.elastic_conflicts == 0
    doc = receivers.elastic[uids[0]]
    assert doc["event"]["code"] == "posture.finding" and doc["event"]["outcome"] == "failure"
    assert doc["event"]["category"] == ["configuration"] and doc["ecs"]["version"].startswith("8.")
    assert {s["name"]: (s["queued"], s["dead_letters"]) for s in service.status()} == dict.fromkeys(
        ("hec", "otlp", "es", "hook"), (0, 0)
    )
    # A resend (an answer lost after the index took it) is a 409 for Elasticsearch: delivered, not duplicated.
    with storage.write() as conn:
        conn.execute(forward_store.forward_outbox.insert(), [{"forwarder": "es", "uid": u} for u in uids[:5]])
    drain(service, storage)
    assert receivers.elastic_conflicts == 5 and len(receivers.elastic) == 40


def test_a_broken_event_is_a_dead_letter_and_blocks_nothing(storage: Storage, receivers: Receivers) -> None:
    configs = [c for c in http_configs(receivers) if c.name != "otlp"]
    service = ForwardingService(storage, configs, SystemClock())
    forward_store.set_capture(storage, True)
    uids = store(storage, records(20))
    receivers.refuse_uid = uids[3]
    drain(service, storage)
    others = set(uids) - {uids[3]}
    assert (
        set(receivers.hec) == others and set(receivers.webhook) == others and set(receivers.elastic) == others
    )
    assert {s["name"]: s["dead_letters"] for s in service.status()} == {"hec": 1, "es": 1, "hook": 1}


def test_hec_indexer_ack_counts_a_batch_delivered_only_once_indexed(
    storage: Storage, receivers: Receivers
) -> None:
    options = {"url": receivers.url, "token": HEC_TOKEN, "indexer_ack": True, "ack_timeout": 0.6}
    service = ForwardingService(
        storage, [ForwarderConfig("hec", "splunk_hec", options, batch=7)], SystemClock()
    )
    service.BASE_BACKOFF_S = 0.01
    forward_store.set_capture(storage, True)
    receivers.hec_ack_after = None  # HEC takes the events but never reports them indexed
    uids = store(storage, records(10))
    for _ in range(3):
        service.step()
    status = service.status()[0]
    assert status["queued"] == 10 and "indexer acknowledgement" in status["last_error"]
    assert receivers.hec and set(receivers.hec) <= set(uids)  # HEC took a batch: not enough
    receivers.hec_ack_after = 2  # indexed after two polls
    drain(service, storage)
    assert set(receivers.hec) == set(uids) and all(n >= 1 for n in receivers.hec.values())
    assert len(receivers.hec_channels) == 1 and max(receivers.hec_ack_polls.values()) >= 3
    assert service.status()[0]["dead_letters"] == 0 and receivers.errors == []


def test_otlp_partial_success_makes_the_rejected_record_a_dead_letter(
    storage: Storage, receivers: Receivers
) -> None:
    config = ForwarderConfig("otlp", "otlp_http", {"url": receivers.url}, batch=7)
    service = ForwardingService(storage, [config], SystemClock())
    forward_store.set_capture(storage, True)
    uids = store(storage, records(20))
    receivers.otlp_reject_uid = uids[3]
    drain(service, storage)
    assert set(receivers.otlp) == set(uids) - {uids[3]}  # its batch mates arrive (some twice: at least once)
    assert service.status()[0]["dead_letters"] == 1 and receivers.errors == []
    with storage.engine.connect() as conn:
        dead = conn.execute(
            sa.select(forward_store.forward_outbox.c.uid, forward_store.forward_outbox.c.last_error).where(
                forward_store.forward_outbox.c.dead == sa.true()
            )
        ).all()
    assert [(u, e) for u, e in dead] == [(uids[3], "rejected by the receiver: bad record")]


def test_a_receiver_outage_loses_nothing_and_backpressure_bounds_the_queue(
    storage: Storage, receivers: Receivers
) -> None:
    config = ForwarderConfig("es", "elasticsearch", {"url": receivers.url}, batch=50, max_queued=30)
    service = ForwardingService(storage, [config], SystemClock())
    service.BASE_BACKOFF_S = 0.05
    forward_store.set_capture(storage, True)
    port = receivers.port
    receivers.stop()
    uids = store(storage, records(40))
    for _ in range(5):
        service.step()
    assert service.status()[0]["queued"] == 40 and service.status()[0]["last_error"] == "ConnectionError"
    assert service.over_bound()  # ingest now answers 503: the agents keep the rest
    back = Receivers(port).start()
    try:
        drain(service, storage)
        assert set(back.elastic) == set(uids) and not service.over_bound()
    finally:
        back.stop()


def test_forwarders_in_server_toml(tmp_path: Path) -> None:
    config = tmp_path / "server.toml"
    config.write_text(
        '[[forwarders]]\ntype = "syslog_tls"\nhost = "siem.example.com"\nca = "ca.pem"\n'
        '[[forwarders]]\ntype = "splunk_hec"\nname = "splunk"\nurl = "https://hec.example.com:8088"\ntoken = "t"\nbatch = 100\n',
        encoding="utf-8",
    )
    settings = load_settings(config)
    syslog, hec = settings.forwarders
    assert (syslog.name, syslog.option("ca")) == ("syslog_tls", str(tmp_path / "ca.pem"))
    assert (hec.name, hec.batch, hec.option("token")) == ("splunk", 100, "t")
    for text, message in (
        ('[[forwarders]]\ntype = "kafka"\n', "forwarders[0].type: must be one of"),
        ('[[forwarders]]\ntype = "webhook"\n', "forwarders[0].url: required for type webhook"),
        ('[[forwarders]]\ntype = "webhook"\nurl = "ftp://x"\n', "forwarders[0].url: must be an http"),
        (
            '[[forwarders]]\ntype = "webhook"\nurl = "https://x"\ntoken = "t"\n',
            "unknown key(s) token for type webhook",
        ),
        (
            '[[forwarders]]\ntype = "webhook"\nurl = "https://x"\n[[forwarders]]\ntype = "webhook"\nurl = "https://y"\n',
            "distinct names",
        ),
    ):
        config.write_text(text, encoding="utf-8")
        with pytest.raises(SettingsError) as caught:
            load_settings(config)
        assert message in str(caught.value) and "\n" not in str(caught.value)


def test_syslog_frames_are_rfc_5424_with_rfc_5425_octet_counting() -> None:
    (record,) = records(1)
    message = syslog_message(record)
    frame = octet_counted(message)
    length, _, rest = frame.partition(b" ")
    assert int(length) == len(rest) == len(message)
    header, _, msg = message.partition(b"\xef\xbb\xbf")
    prival, timestamp, host, app, procid, msgid, sd = header.decode("ascii").rstrip(" ").split(" ", 6)
    assert prival == "<107>1"  # PRI: facility 13 (log audit) * 8 + 3 (OCSF High -> error); VERSION 1
    assert timestamp == "2026-11-02T09:00:01.000Z" and host == DEVICE and (app, procid) == ("mamori", "-")
    assert (
        msgid == "posture.finding" and sd.startswith('[mamori@32473 uid="') and sd.endswith('" sequence="1"]')
    )
    assert json.loads(msg) == record


# --- a real rsyslog with TLS (RFC 5425) ----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.apps
def test_syslog_tls_delivers_to_a_real_rsyslog(storage: Storage, tmp_path: Path) -> None:
    rsyslogd = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
    if not Path(rsyslogd).exists() or not Path("/usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_gtls.so").exists():
        pytest.skip("rsyslog and rsyslog-gnutls are not installed (.ci/run installs them)")
    ca = TestCA(tmp_path)
    leaf = ca.issue("syslog", ("localhost",))
    port = free_port()
    out = tmp_path / "received.log"
    conf = tmp_path / "rsyslog.conf"
    conf.write_text(
        f"""
global(workDirectory="{tmp_path}" DefaultNetstreamDriver="gtls"
       DefaultNetstreamDriverCAFile="{ca.path}" DefaultNetstreamDriverCertFile="{leaf.cert}"
       DefaultNetstreamDriverKeyFile="{leaf.key}")
module(load="imtcp" StreamDriver.Name="gtls" StreamDriver.Mode="1" StreamDriver.AuthMode="anon")
input(type="imtcp" port="{port}" address="127.0.0.1" ruleset="mamori")
template(name="wire" type="string" string="%PRI%|%PROTOCOL-VERSION%|%TIMESTAMP:::date-rfc3339%|%HOSTNAME%|%APP-NAME%|%PROCID%|%MSGID%|%STRUCTURED-DATA%|%msg%\\n")
ruleset(name="mamori") {{ action(type="omfile" file="{out}" template="wire") }}
""",
        encoding="utf-8",
    )
    proc = subprocess.Popen(
        [rsyslogd, "-n", "-f", str(conf), "-i", str(tmp_path / "rsyslog.pid")], stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
                time.sleep(0.1)
        config = ForwarderConfig(
            "syslog",
            "syslog_tls",
            {"host": "127.0.0.1", "port": port, "ca": str(ca.path), "server_name": "localhost"},
            batch=8,
        )
        service = ForwardingService(storage, [config], SystemClock())
        forward_store.set_capture(storage, True)
        sent = records(25)
        uids = store(storage, sent)
        drain(service, storage)
        by_uid: dict[str, list[str]] = {}
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(by_uid) < 25:
            time.sleep(0.1)
            lines = out.read_text(encoding="utf-8").splitlines() if out.exists() else []
            by_uid = {}
            for line in lines:
                fields = line.split("|", 8)
                by_uid.setdefault(json.loads(fields[8].lstrip("\ufeff").strip())["metadata"]["uid"], fields)
        assert set(by_uid) == set(uids)
        first = by_uid[uids[0]]
        # rsyslog parsed each frame as RFC 5424: version 1, our host, app, msgid and structured data.
        assert first[0] == "107" and first[1] == "1" and first[3] == DEVICE and first[4] == "mamori"
        assert first[6] == "posture.finding" and first[7].startswith(f'[mamori@32473 uid="{uids[0]}"')
        assert json.loads(first[8].lstrip("\ufeff").strip()) == sent[0]
    finally:
        proc.terminate()
        proc.wait(10)
