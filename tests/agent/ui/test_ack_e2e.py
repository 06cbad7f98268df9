"""Acknowledgement end to end: signed policy on a real server -> dialog on the worker's desktop -> the worker
acknowledges -> the POLICY_ACKNOWLEDGED event (policy id, version, time) is stored on the server.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import requests

from agent.demo import Demo, free_port, mamori, run_step
from agent.i18n import Translator
from tests.agent.ui.test_tray_desktop import TrayState, status_for
from tests.harness.policies import write_agent_config
from tests.harness.uidesk import ROOT, TrayApp, find_window, window_gone
from tests.harness.xdesktop import XDesktop, wait_for


def test_new_policy_dialog_ack_event_on_server(xdesktop: XDesktop, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("DISPLAY", None)
    demo = Demo(tmp_path / "demo", free_port(), env)
    demo.workdir.mkdir()
    try:
        public, _bundle = demo.keys_and_policy()
        secret = demo.server(public, _bundle)
        state = tmp_path / "state"
        config = write_agent_config(tmp_path, state_dir=state, trusted_keys=[public], server=demo.url)
        run_step(
            mamori(
                "agent",
                "enroll",
                "--insecure-http",
                "--server",
                demo.url,
                "--secret",
                secret,
                "--config",
                str(config),
            ),
            "enroll",
            env,
        )
        policy_text = (demo.workdir / "demo-policy.toml").read_text(encoding="utf-8")

        t = Translator("ja")
        app = TrayApp(
            xdesktop,
            tmp_path,
            "ja",
            status_for(TrayState.COVERED),
            policy=policy_text,
            show_ack=True,
            extra=["--report-config", str(config), "--state-dir", str(state)],
        )
        try:
            dialog = find_window(xdesktop, t("ack.title"))
            xdesktop.xdotool("windowactivate", "--sync", str(dialog))
            xdesktop.key("space")
            wait_for(lambda: window_gone(xdesktop, t("ack.title")), timeout=5, what="dialog to close")
            assert "acknowledge acme-standard 1" in app.commands()

            headers = {"Authorization": f"Bearer {demo.admin_token}"}

            def stored() -> dict[str, object] | None:
                r = requests.get(
                    f"{demo.url}/v1/admin/events", params={"class": 5019}, headers=headers, timeout=5
                )
                r.raise_for_status()
                for e in r.json()["events"]:
                    if e.get("metadata", {}).get("event_code") == "policy.acknowledged":
                        return e
                return None

            event = wait_for(stored, timeout=30, interval=0.5, what="the acknowledgement on the server")
            assert event["unmapped"] == {"policy_id": "acme-standard", "version": 1}  # type: ignore[index]
            assert isinstance(event["time"], int) and event["time"] > 0
            assert "device" in event
        finally:
            assert app.stop() == 0
    finally:
        demo.stop()
    assert sys.executable  # the server and the tray were real child processes, stopped above
