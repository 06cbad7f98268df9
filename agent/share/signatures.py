"""Built-in screen-share and recording signatures, per OS (SPEC.md, "Screen share / recording").

A signature (:class:`policy.model.ShareSignature`, the same type the policy's ``[[screen_share.signatures]]``
uses) names the app and says what a live share or recording looks like:

- ``processes`` only: the share/recording is live while such a process runs (a recorder, OBS, a capture
  helper that exists only while capturing);
- ``title`` and/or ``wm_class``: the share is live while an indicator window with that title/class is shown
  (Zoom's share toolbar, Teams' sharing control bar, the browser's "… is sharing your screen" bar). When
  ``processes`` is also given, the indicator must belong to such a process (when the owner is known).

Titles and classes below were collected from the apps' public UI strings and from the window lists that
tiling-WM and compositor configurations publish for these windows; ja and en variants are both listed.
Each entry's comment says what it matches. docs/screen-share-guard.md explains how to add one in the policy.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from agent.platform import OS_FAMILY, OsFamily
from agent.share import recorders
from policy.model import Policy, ShareSignature

OS_FAMILIES: tuple[OsFamily, ...] = ("linux", "windows", "macos")


def _re(pattern: str) -> re.Pattern[str]:
    # Same flags as policy/load.py uses for policy regexes, so built-ins and policy entries behave alike.
    return re.compile(pattern, re.IGNORECASE)


def _sig(
    app: str, processes: Sequence[str] = (), title: str | None = None, wm_class: str | None = None
) -> ShareSignature:
    return ShareSignature(
        app=app,
        processes=tuple(processes),
        title=_re(title) if title is not None else None,
        wm_class=_re(wm_class) if wm_class is not None else None,
    )


# Browser indicator bars. Chromium (Chrome, Edge, Brave, Vivaldi, Opera) shows a small bar titled
# "<origin> is sharing your screen." / "<origin> が画面を共有しています。" for getDisplayMedia shares
# (Meet, Webex, Teams web, Zoom web ...). The title is the whole window title, so it is anchored: a web
# page whose title merely contains the phrase becomes "<page title> - Google Chrome" and does not match.
# Chromium 156's own strings (en-US.pak / ja.pak, ids 12125-12130) also name the tab's browser: "<origin> is
# sharing a Chrome tab." / "<origin> が Chrome タブを共有しています。". On X11 the bar is a managed top-level
# window of the browser process with _NET_WM_NAME only (no WM_NAME, no WM_CLASS), origin as
# "http://localhost:8080" (tests/agent/share/test_real_browser_share.py).
BROWSER_INDICATOR_TITLE = (
    r"^\S+ (is sharing (your screen|your entire screen|a window|this tab|a tab|your screen and audio"
    r"|a window and audio|this tab and audio|a tab and audio|a (\S+ ){1,2}tab( and audio)?))\.?$"
    r"|^\S+ ?が ?(画面|ウィンドウ|(\S+ ){0,2}タブ|このタブ)(と音声)?を共有しています。?$"
)
# Firefox's global sharing indicator has the fixed title "Firefox — Sharing Indicator" (webrtcIndicator.ftl,
# "webrtc-indicator-title"); older releases used a hyphen. ja: "Firefox — 共有インジケーター".
FIREFOX_INDICATOR_TITLE = (
    r"^(Mozilla )?Firefox( Developer Edition| Nightly| ESR)? ?[—–-] ?(Sharing Indicator|共有インジケーター)$"
)

# Teams (classic and new) titles its floating share toolbar "Sharing control bar | Microsoft Teams";
# ja "共有コントロール バー | Microsoft Teams".
TEAMS_TOOLBAR_TITLE = r"^(sharing control bar|共有コントロール ?バー)( \| Microsoft Teams.*)?$"

_CHROMIUM_LINUX = (
    "chrome",
    "google-chrome*",
    "chromium*",
    "msedge",
    "microsoft-edge*",
    "brave*",
    "vivaldi*",
    "opera",
)
_FIREFOX_LINUX = ("firefox*", "librewolf*")
_CHROMIUM_WINDOWS = ("chrome.exe", "msedge.exe", "brave.exe", "vivaldi.exe", "opera.exe")
_CHROMIUM_MACOS = ("Google Chrome*", "Microsoft Edge*", "Chromium", "Brave Browser", "Vivaldi", "Opera")

LINUX: tuple[ShareSignature, ...] = (
    # Zoom (X11): while sharing, the "zoom" process maps the share toolbar "as_toolbar" and the red frame
    # around the shared area "cpt_frame_xcb_window", both of WM_CLASS "zoom".
    _sig("Zoom", ("zoom", "zoom.real"), title=r"^(as_toolbar|cpt_frame_xcb_window)$", wm_class=r"^zoom"),
    # Teams for Linux (Electron) uses the same toolbar title as on Windows; Teams in a browser shows the
    # browser's own indicator bar instead (next signature).
    _sig("Microsoft Teams", ("teams*", "teams-for-linux"), title=TEAMS_TOOLBAR_TITLE),
    _sig("Browser", _CHROMIUM_LINUX, title=BROWSER_INDICATOR_TITLE),
    _sig("Browser", _FIREFOX_LINUX, title=FIREFOX_INDICATOR_TITLE),
    # Recorders whose running process means capturing.
    _sig("OBS Studio", ("obs",)),
    _sig("SimpleScreenRecorder", ("simplescreenrecorder",)),
    _sig("Kazam", ("kazam",)),
    _sig("Peek", ("peek",)),
    _sig("vokoscreen", ("vokoscreenNG", "vokoscreen")),
    _sig("recordMyDesktop", ("recordmydesktop",)),
    # ffmpeg, gst-launch and vlc only while their arguments grab the screen (agent/share/recorders.py).
    *recorders.COMMAND_LINE,
    _sig("wf-recorder", ("wf-recorder",)),
    _sig("wl-screenrec", ("wl-screenrec",)),
    _sig("GPU Screen Recorder", ("gpu-screen-recorder",)),
    # GNOME's built-in recorder (Ctrl+Shift+Alt+R) and portal screencasts are read from PipeWire
    # (agent/share/pipewire.py), not from a signature: they have no window and no process of their own.
)

WINDOWS: tuple[ShareSignature, ...] = (
    # Zoom: the floating share toolbar, class ZPFloatToolbarClass, titled "Screen sharing meeting controls"
    # (ja "画面共有ミーティングコントロール"). The class alone is also used by other Zoom float bars.
    _sig(
        "Zoom",
        ("Zoom.exe",),
        title=r"screen sharing meeting controls|画面共有(ミーティング)? ?コントロール|画面を共有しています",
        wm_class=r"^ZPFloatToolbarClass$",
    ),
    # Teams: new Teams (ms-teams.exe, class TeamsWebView) and classic Teams (Teams.exe, Chrome_WidgetWin_1).
    _sig("Microsoft Teams", ("ms-teams.exe", "Teams.exe", "msedgewebview2.exe"), title=TEAMS_TOOLBAR_TITLE),
    _sig(
        "Browser",
        _CHROMIUM_WINDOWS,
        title=BROWSER_INDICATOR_TITLE,
        wm_class=r"^Chrome_WidgetWin_\d+$",
    ),
    _sig("Browser", ("firefox.exe",), title=FIREFOX_INDICATOR_TITLE),
    # ffmpeg.exe (gdigrab, ddagrab, gfxcapture), gst-launch-1.0.exe (d3d11/d3d12/dx9/gdi screen capture),
    # vlc.exe (screen://): by their arguments, as on Linux (agent/share/recorders.py).
    *recorders.COMMAND_LINE,
    _sig("OBS Studio", ("obs64.exe", "obs32.exe", "obs.exe")),
    # Xbox Game Bar records through the Broadcast DVR server, which runs only while capturing.
    _sig("Xbox Game Bar", ("bcastdvr.exe",)),
    # Snipping Tool's capture overlay (snip or screen recording) runs in ScreenClippingHost.exe; the
    # recording toolbar of Snipping Tool itself is titled "Recording" / "録画中" while a recording runs.
    _sig("Snipping Tool", ("ScreenClippingHost.exe",)),
    _sig(
        "Snipping Tool",
        ("SnippingTool.exe",),
        title=r"^(Snipping Tool - )?(Recording|録画中|録画)",
    ),
)

MACOS: tuple[ShareSignature, ...] = (
    # Zoom (zoom.us): the share toolbar and status bar windows while sharing.
    _sig(
        "Zoom",
        ("zoom.us",),
        title=r"^zoom share (toolbar|statusbar) window$|^(画面を共有しています|You are screen sharing)",
    ),
    _sig("Microsoft Teams", ("Microsoft Teams*", "MSTeams"), title=TEAMS_TOOLBAR_TITLE),
    _sig("Browser", _CHROMIUM_MACOS, title=BROWSER_INDICATOR_TITLE),
    _sig("Browser", ("firefox",), title=FIREFOX_INDICATOR_TITLE),
    # ffmpeg (avfoundation), gst-launch-1.0 (avfvideosrc capture-screen=true), vlc (screen://): by their
    # arguments, as on Linux (agent/share/recorders.py).
    *recorders.COMMAND_LINE,
    _sig("OBS Studio", ("OBS", "obs")),
    # screencaptureui runs while the Screenshot toolbar (Cmd+Shift+5) is up and while a screen recording
    # runs; its menu-bar stop button is the recording indicator.
    _sig("macOS Screenshot", ("screencaptureui",)),
    # Someone is viewing this Mac through Screen Sharing / Remote Management: screensharingd serves the
    # connection, SSMenuAgent shows the menu-bar indicator.
    _sig("macOS Screen Sharing", ("screensharingd", "SSMenuAgent")),
    # macOS 14+ shows the purple screen-capture indicator from Control Center while any app captures.
    _sig(
        "macOS capture indicator",
        ("ControlCenter", "Control Center"),
        title=r"^(Screen Recording|Screen Sharing|画面収録|画面共有)( in use|中)?$",
    ),
)

BUILTIN: dict[OsFamily, tuple[ShareSignature, ...]] = {"linux": LINUX, "windows": WINDOWS, "macos": MACOS}


def builtin_signatures(os_family: OsFamily | None = None) -> tuple[ShareSignature, ...]:
    """The built-in signatures of ``os_family`` (default: this machine's OS family)."""
    return BUILTIN[os_family or OS_FAMILY]


def signatures_for(policy: Policy | None, os_family: OsFamily | None = None) -> tuple[ShareSignature, ...]:
    """The built-in signatures of this OS followed by the policy's ``[[screen_share.signatures]]``.

    Policy entries add to the built-ins; they never remove one (an administrator cannot accidentally turn
    the guard off for Zoom by adding a Webex signature).
    """
    extra = policy.screen_share.signatures if policy is not None else ()
    return builtin_signatures(os_family) + tuple(extra)


def builtin_app_names() -> frozenset[str]:
    """Every app name the share guard can report without a policy signature (for the report allow-list)."""
    from agent.share.detect import PIPEWIRE_APP
    from agent.share.pipewire import consumer_app_names

    return frozenset(s.app for sigs in BUILTIN.values() for s in sigs) | consumer_app_names() | {PIPEWIRE_APP}
