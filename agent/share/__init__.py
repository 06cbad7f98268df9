"""Screen-share and recording guard (SPEC.md, "Screen share / recording"; docs/screen-share-guard.md).

``detect`` decides from one snapshot (pure); ``ShareMonitor`` polls and reports; ``ShareSelfCheck``
confirms that covers are present in what a sharing app captures; ``install_share_guard`` plugs both into
the runtime.
"""

from agent.share.detect import NOT_SHARING, CaptureStream, ProcessInfo, ShareState, detect
from agent.share.guard import ShareGuard, install_share_guard
from agent.share.monitor import COVER_MESSAGE_KEY, COVER_REASON, NOTICE_MESSAGE_KEY, ShareMonitor, ShareNotice
from agent.share.selfcheck import CoverLook, CoverTarget, SelfCheckResult, ShareSelfCheck
from agent.share.signatures import builtin_signatures, signatures_for

__all__ = [
    "COVER_MESSAGE_KEY",
    "COVER_REASON",
    "NOTICE_MESSAGE_KEY",
    "NOT_SHARING",
    "CaptureStream",
    "CoverLook",
    "CoverTarget",
    "ProcessInfo",
    "SelfCheckResult",
    "ShareGuard",
    "ShareMonitor",
    "ShareNotice",
    "ShareSelfCheck",
    "ShareState",
    "builtin_signatures",
    "detect",
    "install_share_guard",
    "signatures_for",
]
