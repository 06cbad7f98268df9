"""PipeWire screencast probe over pw-dump documents (tests/agent/share/data/pw-dump-*.json)."""

from __future__ import annotations

import pytest

from agent.share.detect import CaptureStream
from agent.share.pipewire import PipeWireProbe, default_capture_probe, parse_pw_dump
from tests.harness.share_fixtures import DATA


def dump(name: str) -> str:
    return (DATA / "pipewire" / name).read_text(encoding="utf-8")


def test_gnome_screencast_consumed_by_chromium() -> None:
    assert parse_pw_dump(dump("gnome-meet-sharing.json")) == [CaptureStream("Browser")]


def test_gnome_recorder_and_obs_on_kde() -> None:
    assert parse_pw_dump(dump("kde-obs-recording.json")) == [CaptureStream("OBS Studio")]


def test_idle_graph_with_camera_and_paused_screencast_is_not_sharing() -> None:
    # A webcam is also a Video/Source; a screencast node in state "suspended" has no consumer.
    assert parse_pw_dump(dump("gnome-idle-camera.json")) == []


def test_probe_reports_unknown_when_pw_dump_fails_or_talks_nonsense() -> None:
    assert PipeWireProbe(lambda: None)() is None
    assert PipeWireProbe(lambda: "not json")() is None
    assert PipeWireProbe(lambda: '{"a": 1}')() is None
    assert PipeWireProbe(lambda: dump("gnome-meet-sharing.json"))() == [CaptureStream("Browser")]


def test_not_json_raises_value_error() -> None:
    with pytest.raises(ValueError, match="not JSON"):
        parse_pw_dump("{")


def test_probe_only_on_wayland() -> None:
    assert default_capture_probe({"XDG_SESSION_TYPE": "x11", "DISPLAY": ":0"}) is None
    # Wayland without pw-dump: screencasts are "unknown", not "none".
    probe = default_capture_probe({"XDG_SESSION_TYPE": "wayland"}, which=lambda _: None)
    assert probe is not None and probe() is None
    probe = default_capture_probe({"WAYLAND_DISPLAY": "wayland-0"}, which=lambda _: "/usr/bin/pw-dump")
    assert isinstance(probe, PipeWireProbe)


def test_consumers_are_named_from_a_closed_list() -> None:
    # A consumer's application.name comes from another process: it is mapped to a known app name, never
    # passed through (events carry app names only).
    text = dump("gnome-meet-sharing.json").replace('"Chromium"', '"顧客台帳 - 山田様 (Private)"')
    text = text.replace('"webrtc-consume-stream"', '"unknown-consumer"')
    assert parse_pw_dump(text) == [CaptureStream("Screencast")]
