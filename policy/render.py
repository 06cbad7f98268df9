"""A policy as plain JSON data: for ``mamori policy show --json``, the server dashboard and events.

The inverse of the loader's conversions: durations back to strings ("5m"), regexes to their source,
date-times to RFC 3339. Pure.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import datetime
from typing import Any

from policy import model


def policy_as_data(policy: model.Policy) -> dict[str, Any]:
    """The whole policy, defaults filled in, as JSON-compatible data in the file's own spelling."""
    data = _value(policy, {})
    assert isinstance(data, dict)
    return data


def _value(value: Any, meta: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _value(getattr(value, f.name), f.metadata) for f in dataclasses.fields(value)}
    if isinstance(value, tuple):
        return [_value(v, {}) for v in value]
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, re.Pattern):
        return value.pattern
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float) and meta.get("duration"):
        return model.format_duration(value)
    return value


def policy_summary(policy: model.Policy) -> dict[str, Any]:
    """The handful of facts an administrator checks first."""
    presence = policy.presence
    return {
        "warn_after": model.format_duration(presence.warn_after),
        "protect_after": model.format_duration(presence.protect_after),
        "lock_after": model.format_duration(presence.lock_after),
        "cover": presence.cover,
        "customer_apps": [app.name for app in policy.customer_apps],
        "screen_share_protect": policy.screen_share.protect,
        "vpn_required_for_customer_apps": policy.network.vpn.required_for_customer_apps,
        "untrusted_wifi": policy.network.wifi.untrusted,
        "tls_endpoints": [endpoint.url for endpoint in policy.network.tls],
        "acknowledgement_required": policy.acknowledgement.required,
        "on_check_error": policy.enforcement.on_check_error,
    }
