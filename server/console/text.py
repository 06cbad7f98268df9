"""The console's words in Japanese and English: page text, device states, event kinds, OCSF classes,
severities, and the agent's posture checks with their fixes.

The check names and fixes are copied from the agent's catalog (agent/i18n/messages/posture.toml, keys
``posture.remedy.*``; check ids from agent/posture/vpn.py, wifi.py, plaintext.py, tls.py and device.py): the
server does not import the agent (pyproject [tool.importlinter]). tests/server/test_console.py compares them
with that file, so a changed fix on the agent fails the test until it is copied here.
"""

from __future__ import annotations

LANGUAGES = ("ja", "en")

TEXT: dict[str, dict[str, str]] = {
    "en": {
        "title": "Mamori console",
        # sign-in page (server/templates/login.html, server/routes/signin.py)
        "login": "Sign in with an admin token",
        "token": "Admin token",
        "submit": "Sign in",
        "failed": "That token is not an admin token.",
        # navigation and header
        "nav_overview": "Overview",
        "nav_events": "Events",
        "nav_policies": "Policies",
        "nav_alerts": "Alerts",
        "nav_reports": "Reports",
        "reports": "Compliance reports",
        "reports_intro": "Per device and in total for one group and month: acknowledgement coverage per policy "
        "version, protections applied, minutes non-compliant per check, lock failures, silent periods and "
        "unexpected stops, with the policy versions in force and a SHA-256 of the data (the same report as "
        "`mamori server report`). The report is in the language of this page.",
        "report_period": "Month",
        "report_format": "Format",
        "report_download": "Download",
        "signed_in_as": "Signed in as",
        "logout": "Sign out",
        "times_in": "Times in",
        "updated": "As of",
        "refresh": "Refresh (every minute by itself)",
        # overview
        "overview": "Overview",
        "devices": "Devices",
        "device": "Device",
        "hostname": "Host name",
        "group": "Group",
        "status": "Status",
        "last_seen": "Last seen",
        "policy": "Policy",
        "failing": "Failing checks",
        "gaps": "Missing events",
        "unexpected_stops": "Stopped unexpectedly (24 h)",
        "replaced_count": "Replaced",
        "rollout": "Policy rollout",
        "rollout_note": "Devices on each policy version, per group (the version each device last reported applying).",
        "ack_coverage": "Acknowledgement coverage",
        "acknowledged": "Acknowledged",
        "of_devices": "of the group's devices",
        "no_policy": "no policy yet",
        "chart_protections": "Protections per day",
        "chart_noncompliant": "Minutes non-compliant per day, by check",
        "chart_silent": "Silent devices per day (not heard from that day)",
        "charts_days": "Last 14 days (UTC days).",
        "recent": "Recent events",
        "all_devices": "All devices",
        "none": "No devices enrolled yet: run `mamori server enroll-secret create`, then `mamori agent enroll`.",
        # device page
        "identity": "Identity",
        "os": "OS",
        "agent_version": "Agent version",
        "enrolled": "Enrolled",
        "checks": "Checks",
        "check": "Check",
        "result": "Result",
        "since": "Failing since",
        "fix": "Fix",
        "no_checks": "No posture results received yet.",
        "timeline": "Timeline",
        "actions": "Actions",
        "revoke": "Revoke",
        "revoke_note": "The device's next call is refused (401); enroll it again to bring it back.",
        "replaced": "Mark replaced",
        "replaced_note": "The device was replaced by a new one; it is kept for the record.",
        "delete": "Delete",
        "delete_note": "Removes the device; its events stay in the event store.",
        "revoked": "revoked",
        "not_found": "No such device.",
        "enforcement": "Enforcement",
        # events page
        "events": "Events",
        "filter": "Filter",
        "any": "any",
        "from": "From",
        "to": "To",
        "class": "Class",
        "message": "Event",
        "severity": "Severity",
        "time": "Time",
        "apply": "Apply",
        "and_above": " and above",
        "download_csv": "Download CSV",
        "newer": "Newest",
        "older": "Older",
        "no_events": "No events match.",
        "bad_filter": "That filter is not valid",
        # policies page
        "policies": "Policies",
        "version": "Version",
        "published": "Published",
        "devices_on": "Devices on it",
        "who_ack": "Who acknowledged",
        "acked_at": "Acknowledged at",
        "nobody": "nobody yet",
        # device states
        "online": "online",
        "away": "away",
        "non_compliant": "non-compliant",
        "silent": "silent",
        "stopped": "stopped",
        "never_seen": "never seen",
        # check results
        "r_pass": "pass",
        "r_fail": "fail",
        "r_error": "error",
        "r_skip": "not determinable",
        "m_off": "off",
        "m_report": "report only",
        "m_warn": "warn",
        "m_block": "block",
        "e_none": "none",
        "e_warn": "warning",
        "e_block": "blocking",
    },
    "ja": {
        "title": "Mamori 管理コンソール",
        "login": "管理者トークンでサインイン",
        "token": "管理者トークン",
        "submit": "サインイン",
        "failed": "このトークンは管理者トークンではありません。",
        "nav_overview": "概要",
        "nav_events": "イベント",
        "nav_policies": "ポリシー",
        "nav_alerts": "アラート",
        "nav_reports": "レポート",
        "reports": "コンプライアンスレポート",
        "reports_intro": "グループと月ごとに、端末別と合計で、ポリシーの版ごとの同意状況、保護の実施回数、チェックごとの"
        "不適合時間、ロックの失敗、応答のない期間、予期しない停止を、適用されていたポリシーの版と集計データの SHA-256 "
        "とともにまとめます (`mamori server report` と同じレポートです)。レポートはこのページの言語で作られます。",
        "report_period": "対象月",
        "report_format": "形式",
        "report_download": "ダウンロード",
        "signed_in_as": "サインイン中:",
        "logout": "サインアウト",
        "times_in": "時刻の表示:",
        "updated": "表示時刻",
        "refresh": "更新（1分ごとに自動更新）",
        "overview": "概要",
        "devices": "端末",
        "device": "端末",
        "hostname": "ホスト名",
        "group": "グループ",
        "status": "状態",
        "last_seen": "最終接続",
        "policy": "ポリシー",
        "failing": "不適合のチェック",
        "gaps": "欠落イベント",
        "unexpected_stops": "予期しない停止（24時間以内）",
        "replaced_count": "交換済み",
        "rollout": "ポリシーの展開状況",
        "rollout_note": "グループごとの、各ポリシー版を適用した端末の数（端末が最後に適用を報告した版）。",
        "ack_coverage": "ポリシーの確認状況",
        "acknowledged": "確認済み",
        "of_devices": "台（グループの端末数に対して）",
        "no_policy": "ポリシー未配布",
        "chart_protections": "1日あたりの保護の回数",
        "chart_noncompliant": "1日あたりの不適合の時間（分、チェック別）",
        "chart_silent": "1日あたりの応答なしの端末（その日に接続がなかった端末）",
        "charts_days": "直近14日間（日付はUTC）。",
        "recent": "最近のイベント",
        "all_devices": "すべての端末",
        "none": "登録済みの端末はまだありません。`mamori server enroll-secret create` の後 `mamori agent enroll` を実行してください。",
        "identity": "端末の情報",
        "os": "OS",
        "agent_version": "エージェントの版",
        "enrolled": "登録日時",
        "checks": "チェック",
        "check": "チェック",
        "result": "結果",
        "since": "不適合の開始",
        "fix": "対処方法",
        "no_checks": "チェック結果はまだ届いていません。",
        "timeline": "イベントの履歴",
        "actions": "操作",
        "revoke": "失効",
        "revoke_note": "この端末からの次の接続は拒否されます（401）。戻すには登録し直してください。",
        "replaced": "交換済みにする",
        "replaced_note": "新しい端末に交換されたことを記録します。端末の記録は残ります。",
        "delete": "削除",
        "delete_note": "端末を削除します。イベントは残ります。",
        "revoked": "失効済み",
        "not_found": "この端末は見つかりません。",
        "enforcement": "制限",
        "events": "イベント",
        "filter": "絞り込み",
        "any": "すべて",
        "from": "開始",
        "to": "終了",
        "class": "種別",
        "message": "イベント",
        "severity": "重要度",
        "time": "時刻",
        "apply": "絞り込む",
        "and_above": "以上",
        "download_csv": "CSVをダウンロード",
        "newer": "最新へ",
        "older": "さらに古いイベント",
        "no_events": "該当するイベントはありません。",
        "bad_filter": "絞り込みの条件が正しくありません",
        "policies": "ポリシー",
        "version": "版",
        "published": "公開日時",
        "devices_on": "適用済みの端末",
        "who_ack": "確認した端末",
        "acked_at": "確認日時",
        "nobody": "まだいません",
        "online": "オンライン",
        "away": "離席中",
        "non_compliant": "不適合",
        "silent": "応答なし",
        "stopped": "停止",
        "never_seen": "未接続",
        "r_pass": "適合",
        "r_fail": "不適合",
        "r_error": "エラー",
        "r_skip": "判定不可",
        "m_off": "無効",
        "m_report": "記録のみ",
        "m_warn": "警告",
        "m_block": "ブロック",
        "e_none": "なし",
        "e_warn": "警告",
        "e_block": "ブロック中",
    },
}

# Event kinds (core/records.py Kind) as the console names them.
EVENT_NAMES: dict[str, dict[str, str]] = {
    "presence.stage": {"en": "Presence stage changed", "ja": "在席状態の変化"},
    "protection.applied": {"en": "Customer data protected", "ja": "顧客データを保護"},
    "protection.removed": {"en": "Protection removed", "ja": "保護を解除"},
    "session.locked": {"en": "Session locked", "ja": "画面をロック"},
    "session.unlocked": {"en": "Session unlocked", "ja": "ロックを解除"},
    "session.lock_failed": {"en": "Session lock failed", "ja": "画面ロックに失敗"},
    "posture.finding": {"en": "Posture check result", "ja": "チェック結果"},
    "vpn.up": {"en": "VPN connected", "ja": "VPN接続"},
    "vpn.down": {"en": "VPN disconnected", "ja": "VPN切断"},
    "share.started": {"en": "Screen share or recording started", "ja": "画面共有・録画の開始"},
    "share.ended": {"en": "Screen share or recording ended", "ja": "画面共有・録画の終了"},
    "share.selfcheck_failed": {
        "en": "Cover self-check failed during share",
        "ja": "共有中のカバー自己診断に失敗",
    },
    "clipboard.cleared": {
        "en": "Customer data removed from the clipboard",
        "ja": "クリップボードの顧客データを消去",
    },
    "onlooker.started": {"en": "Onlooker guard started", "ja": "のぞき見の検知を開始"},
    "onlooker.detected": {"en": "Onlooker detected", "ja": "のぞき見を検知"},
    "onlooker.cleared": {"en": "Onlooker gone", "ja": "のぞき見の解消"},
    "agent.degraded": {"en": "Agent capability degraded", "ja": "エージェントの機能低下"},
    "agent.paused": {"en": "Protection paused", "ja": "保護の一時停止"},
    "agent.resumed": {"en": "Protection resumed", "ja": "保護の再開"},
    "agent.started": {"en": "Agent started", "ja": "エージェント起動"},
    "agent.stopped": {"en": "Agent stopped", "ja": "エージェント停止"},
    "policy.applied": {"en": "Policy applied", "ja": "ポリシーを適用"},
    "policy.rejected": {"en": "Policy rejected", "ja": "ポリシーを拒否"},
    "policy.acknowledged": {"en": "Policy acknowledged", "ja": "ポリシーを確認"},
    "heartbeat": {"en": "Heartbeat", "ja": "定期接続"},
    "report.gap": {"en": "Events dropped by the agent's full outbox", "ja": "送信待ちの満杯でイベントを破棄"},
    "report.rejected": {"en": "Events rejected by the server", "ja": "サーバーがイベントを拒否"},
}

# OCSF classes (core/records.py CLASSES).
CLASS_NAMES: dict[int, dict[str, str]] = {
    2003: {"en": "Compliance Finding", "ja": "コンプライアンス"},
    3002: {"en": "Authentication", "ja": "認証"},
    4014: {"en": "Tunnel Activity", "ja": "VPN"},
    5019: {"en": "Device Config State Change", "ja": "端末の状態"},
}

# OCSF severity_id (core/records.py SEVERITIES).
SEVERITY_NAMES: dict[int, dict[str, str]] = {
    0: {"en": "Unknown", "ja": "不明"},
    1: {"en": "Informational", "ja": "情報"},
    2: {"en": "Low", "ja": "低"},
    3: {"en": "Medium", "ja": "中"},
    4: {"en": "High", "ja": "高"},
    5: {"en": "Critical", "ja": "重大"},
    6: {"en": "Fatal", "ja": "致命的"},
}

# check id -> (name, remediation key in agent/i18n/messages/posture.toml)
CHECKS: dict[str, tuple[dict[str, str], str]] = {
    "vpn": ({"en": "VPN connected", "ja": "VPN接続"}, "posture.remedy.vpn.connect"),
    "vpn.routes": (
        {"en": "Company routes through the VPN", "ja": "社内経路のVPN経由"},
        "posture.remedy.vpn.routes",
    ),
    "vpn.full_tunnel": (
        {"en": "All traffic through the VPN", "ja": "全通信のVPN経由"},
        "posture.remedy.vpn.full_tunnel",
    ),
    "vpn.dns": ({"en": "Company DNS in use", "ja": "社内DNSの利用"}, "posture.remedy.vpn.connect"),
    "wifi": ({"en": "Wi-Fi security", "ja": "Wi-Fiの暗号化"}, "posture.remedy.wifi.block"),
    "plaintext": (
        {"en": "No unencrypted connections", "ja": "暗号化されていない通信"},
        "posture.remedy.plaintext",
    ),
    "tls": ({"en": "Secure connection to", "ja": "安全な接続:"}, "posture.remedy.tls"),
    "device.disk_encryption": ({"en": "Disk encryption", "ja": "ディスク暗号化"}, "posture.remedy.disk"),
    "device.firewall": ({"en": "Firewall", "ja": "ファイアウォール"}, "posture.remedy.firewall"),
    "device.screen_lock": ({"en": "Automatic screen lock", "ja": "画面の自動ロック"}, "posture.remedy.lock"),
}

# Copied from agent/i18n/messages/posture.toml (same keys; compared by the test).
REMEDIES: dict[str, dict[str, str]] = {
    "posture.remedy.check_error": {
        "ja": "PCを再起動しても解消しない場合は、情報システム部門に連絡してください。",
        "en": "If restarting the PC does not fix this, contact your IT department.",
    },
    "posture.remedy.vpn.connect": {
        "ja": "会社のVPNに接続してください。接続すると顧客データのウィンドウが再表示されます。",
        "en": "Connect to the company VPN. Customer-data windows are shown again once it is connected.",
    },
    "posture.remedy.vpn.routes": {
        "ja": "VPNに接続し直してください。解消しない場合はVPN設定 (スプリットトンネル) について情報システム部門に連絡してください。",
        "en": "Reconnect the VPN. If this persists, ask IT to check the VPN's split-tunnel configuration.",
    },
    "posture.remedy.vpn.full_tunnel": {
        "ja": "会社指定のVPNプロファイル (全通信をVPN経由にする設定) で接続し直してください。",
        "en": "Reconnect using the company VPN profile that sends all traffic through the VPN.",
    },
    "posture.remedy.wifi.vpn": {
        "ja": "VPNに接続するか、WPA2/WPA3で保護されたWi-Fiまたは有線LANに切り替えてください。",
        "en": "Connect the VPN, or switch to a WPA2/WPA3-protected Wi-Fi network or a wired connection.",
    },
    "posture.remedy.wifi.block": {
        "ja": "WPA2/WPA3で保護されたWi-Fiまたは有線LANに切り替えてください (公衆の無料Wi-Fiは使用できません)。",
        "en": "Switch to a WPA2/WPA3-protected Wi-Fi network or a wired connection (public open Wi-Fi is not allowed).",
    },
    "posture.remedy.plaintext": {
        "ja": "顧客データを扱うアプリでは暗号化された接続 (https:// など) を使用してください。解消しない場合は情報システム部門に連絡してください。",
        "en": "Use encrypted connections (such as https://) in customer-data apps. If this persists, contact IT.",
    },
    "posture.remedy.tls": {
        "ja": "社内システムへの通信が傍受されているおそれがあります。公衆Wi-Fiなどから切断してVPNに接続し、解消しない場合は情報システム部門に連絡してください。",
        "en": "Connections to company systems may be intercepted. Leave public networks, connect the VPN, and contact IT if this persists.",
    },
    "posture.remedy.disk": {
        "ja": "ディスク暗号化 (BitLocker / FileVault / LUKS) を有効にしてください。手順は情報システム部門に確認してください。",
        "en": "Turn on disk encryption (BitLocker / FileVault / LUKS); ask IT for the procedure.",
    },
    "posture.remedy.firewall": {
        "ja": "OSのファイアウォールを有効にしてください。",
        "en": "Turn on the operating system's firewall.",
    },
    "posture.remedy.lock": {
        "ja": "画面が自動でロックされるよう (スクリーンセーバー解除時のパスワード)、ポリシーの上限時間以内に設定してください。",
        "en": "Set the screen to lock by itself (password after screen saver or sleep) within the policy's limit.",
    },
}


def event_name(code: str, language: str) -> str:
    names = EVENT_NAMES.get(code)
    return names[language] if names else code


def class_name(class_uid: int, language: str) -> str:
    names = CLASS_NAMES.get(class_uid)
    return names[language] if names else str(class_uid)


def severity_name(severity_id: int, language: str) -> str:
    names = SEVERITY_NAMES.get(severity_id)
    return names[language] if names else str(severity_id)


def _check_entry(check_id: str) -> tuple[dict[str, str], str] | None:
    return CHECKS.get("tls" if check_id.startswith("tls:") else check_id)


def check_name(check_id: str, language: str) -> str:
    """The check's name; a TLS check names its endpoint (``tls:HOST:PORT``); an unknown id is shown as is."""
    entry = _check_entry(check_id)
    if entry is None:
        return check_id
    name = entry[0][language]
    if check_id.startswith("tls:"):
        return f"{name} {check_id[4:]}"
    return name


def check_fix(check_id: str, language: str) -> str:
    entry = _check_entry(check_id)
    return REMEDIES[entry[1] if entry else "posture.remedy.check_error"][language]
