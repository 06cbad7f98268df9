"""Admin credentials and device lifecycle: named admin tokens with a role and an expiry, console sessions,
sign-in throttling, enrollment-secret revocation and revoked / replaced / deleted devices.

Admin tokens stay in ``admin_tokens`` (their SHA-256 only, server/auth.py); ``admin_token_details`` adds a
name, a role, an expiry and the revocation. A token without a details row (made before migration 0003) is an
admin token named ``legacy-<id>`` that never expires.

A console session is a random id in the cookie, never the token; the database keeps only the id's SHA-256, so
a copy of the database does not sign anyone in. Sessions end after ``SESSION_IDLE_MS`` without a request, after
``SESSION_ABSOLUTE_MS`` in any case, at sign-out, and when their token is revoked or expires.

Failed sign-ins are rows in ``signin_failures`` so every server process behind a load balancer counts the same
failures: more than ``FAILS_PER_CLIENT`` from one address, or ``FAILS_OVERALL`` from all addresses, within
``FAIL_WINDOW_MS`` refuse further sign-ins until the window has moved on.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from core.errors import MamoriError
from server import audit, auth
from server.storage import Storage, admin_tokens, devices, enroll_secrets, metadata

Role = Literal["viewer", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "admin")

SESSION_IDLE_MS = 30 * 60 * 1000
SESSION_ABSOLUTE_MS = 12 * 3600 * 1000
# A session's last_seen is written at most this often (a page view is a read, not a write, most of the time).
_TOUCH_EVERY_MS = 60 * 1000

FAIL_WINDOW_MS = 15 * 60 * 1000
FAILS_PER_CLIENT = 5
FAILS_OVERALL = 50

admin_token_details = sa.Table(
    "admin_token_details",
    metadata,
    sa.Column("token_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("expires_at", sa.BigInteger, nullable=True),
    sa.Column("revoked_at", sa.BigInteger, nullable=True),
    sa.Column("created_by", sa.String(128), nullable=True),
)

console_sessions = sa.Table(
    "console_sessions",
    metadata,
    sa.Column("id_hash", sa.String(64), primary_key=True),
    sa.Column("token_id", sa.Integer, nullable=False),
    sa.Column("csrf", sa.String(64), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("last_seen", sa.BigInteger, nullable=False),
    sa.Column("expires_at", sa.BigInteger, nullable=False),
    sa.Index("ix_console_sessions_token", "token_id"),
)

signin_failures = sa.Table(
    "signin_failures",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("client", sa.String(64), nullable=False),
    sa.Column("at", sa.BigInteger, nullable=False),
    sa.Index("ix_signin_failures_at", "at"),
    sa.Index("ix_signin_failures_client_at", "client", "at"),
)

enroll_secret_revocations = sa.Table(
    "enroll_secret_revocations",
    metadata,
    sa.Column("secret_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("revoked_at", sa.BigInteger, nullable=False),
    sa.Column("revoked_by", sa.String(128), nullable=False),
)

device_lifecycle = sa.Table(
    "device_lifecycle",
    metadata,
    sa.Column("device_id", sa.String(64), primary_key=True),
    sa.Column("revoked_at", sa.BigInteger, nullable=True),
    sa.Column("revoked_by", sa.String(128), nullable=True),
    sa.Column("replaced_at", sa.BigInteger, nullable=True),
    sa.Column("replaced_by", sa.String(128), nullable=True),
)


# Kept when a device is deleted: the device row goes last, and raised alerts are a record of what happened and
# what was sent (like the audit log), not state of the device.
_KEPT_ON_DELETE = frozenset({"devices", "alerts"})


class AccountError(MamoriError):
    """A lifecycle request that cannot be done (unknown id, bad name, bad role); ``status`` is its HTTP code."""

    def __init__(self, message: str, status: int = 400) -> None:
        self.status = status
        super().__init__(message)


@dataclass(frozen=True)
class TokenInfo:
    id: int
    name: str
    role: Role
    created_at: int
    expires_at: int | None
    revoked_at: int | None
    legacy: bool

    def active(self, now: int) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)

    def as_json(self, now: int) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "role": self.role,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "revoked_at": self.revoked_at,
            "active": self.active(now),
            "legacy": self.legacy,
        }


@dataclass(frozen=True)
class SessionInfo:
    name: str
    role: Role
    csrf: str
    token_id: int


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
_DURATION = re.compile(r"^(\d{1,6})([mhdw])$")
_UNIT_MS = {"m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 7 * 86_400_000}


def parse_duration_ms(text: str) -> int:
    """``90d``, ``12h``, ``30m``, ``2w`` in milliseconds."""
    match = _DURATION.match(text.strip())
    if match is None or int(match.group(1)) == 0:
        raise AccountError(
            f"expiry {text!r} is not a duration: write it as a number and m, h, d or w, e.g. 90d"
        )
    return int(match.group(1)) * _UNIT_MS[match.group(2)]


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise AccountError(
            f"token name {name!r} is not valid: use 1-64 letters, digits and . _ @ -, starting with a letter or digit"
        )
    if name.startswith("legacy-"):
        raise AccountError(
            f"token name {name!r} is reserved for tokens made before names existed: choose another"
        )
    return name


def check_role(role: str) -> Role:
    if role not in ROLES:
        raise AccountError(f"role {role!r} is not known: use viewer or admin")
    return role  # type: ignore[return-value]


def has_role(role: Role, needed: Role) -> bool:
    return ROLES.index(role) >= ROLES.index(needed)


# --- admin tokens --------------------------------------------------------------------------------------------


def _token_query() -> sa.Select[Any]:
    return sa.select(
        admin_tokens.c.id,
        admin_tokens.c.created_at,
        admin_token_details.c.name,
        admin_token_details.c.role,
        admin_token_details.c.expires_at,
        admin_token_details.c.revoked_at,
    ).select_from(
        admin_tokens.outerjoin(admin_token_details, admin_token_details.c.token_id == admin_tokens.c.id)
    )


def _token_info(row: Any) -> TokenInfo:
    legacy = row.name is None
    return TokenInfo(
        id=int(row.id),
        name=f"legacy-{row.id}" if legacy else row.name,
        role="admin" if legacy else check_role(row.role),
        created_at=int(row.created_at),
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        legacy=legacy,
    )


def token_by_hash(storage: Storage, token_hash: str) -> TokenInfo | None:
    """The admin token with this hash, active or not (the caller checks :meth:`TokenInfo.active`)."""
    with storage.engine.connect() as conn:
        row = conn.execute(_token_query().where(admin_tokens.c.token_hash == token_hash)).first()
    return _token_info(row) if row is not None else None


def list_tokens(storage: Storage) -> list[TokenInfo]:
    with storage.engine.connect() as conn:
        return [_token_info(row) for row in conn.execute(_token_query().order_by(admin_tokens.c.id))]


def create_token(
    storage: Storage, *, name: str, role: str, expires_in_ms: int | None, actor: str, now: int
) -> tuple[str, TokenInfo]:
    """A new named admin token: (the token, shown once; its details). Audited."""
    name, checked_role = check_name(name), check_role(role)
    token = auth.new_token(auth.ADMIN_PREFIX)
    expires_at = now + expires_in_ms if expires_in_ms is not None else None
    with storage.write() as conn:
        taken = conn.execute(
            sa.select(admin_token_details.c.token_id).where(admin_token_details.c.name == name)
        )
        if taken.first() is not None:
            raise AccountError(f"a token named {name!r} exists already: choose another name", 409)
        inserted = conn.execute(
            admin_tokens.insert().values(token_hash=auth.token_hash(token), created_at=now)
        ).inserted_primary_key
        assert inserted is not None
        token_id = int(inserted[0])
        conn.execute(
            admin_token_details.insert().values(
                token_id=token_id, name=name, role=checked_role, expires_at=expires_at, created_by=actor
            )
        )
        audit.append(
            conn,
            actor=actor,
            action="token.create",
            target=name,
            detail={"token_id": token_id, "role": checked_role, "expires_at": expires_at},
            now_ms=now,
        )
    return token, TokenInfo(int(token_id), name, checked_role, now, expires_at, None, legacy=False)


def revoke_token(storage: Storage, token_id: int, *, actor: str, now: int) -> TokenInfo:
    """Revoke an admin token and end its console sessions. Audited; revoking twice is refused (409)."""
    with storage.write() as conn:
        row = conn.execute(_token_query().where(admin_tokens.c.id == token_id)).first()
        if row is None:
            raise AccountError(f"no admin token has id {token_id}: see `mamori server admin-token list`", 404)
        info = _token_info(row)
        if info.revoked_at is not None:
            raise AccountError(f"admin token {token_id} ({info.name}) is revoked already", 409)
        if info.legacy:
            conn.execute(
                admin_token_details.insert().values(
                    token_id=token_id, name=info.name, role="admin", revoked_at=now, created_by=None
                )
            )
        else:
            conn.execute(
                admin_token_details.update()
                .where(admin_token_details.c.token_id == token_id)
                .values(revoked_at=now)
            )
        ended = conn.execute(
            console_sessions.delete().where(console_sessions.c.token_id == token_id)
        ).rowcount
        audit.append(
            conn,
            actor=actor,
            action="token.revoke",
            target=info.name,
            detail={"token_id": token_id, "sessions_ended": ended},
            now_ms=now,
        )
    return TokenInfo(info.id, info.name, info.role, info.created_at, info.expires_at, now, info.legacy)


# --- console sessions ----------------------------------------------------------------------------------------


def start_session(storage: Storage, token: TokenInfo, *, client: str, now: int) -> str:
    """A new session for a signed-in token (audited as ``signin``); returns the session id for the cookie."""
    session_id = secrets.token_urlsafe(32)
    with storage.write() as conn:
        conn.execute(console_sessions.delete().where(console_sessions.c.expires_at <= now))
        conn.execute(
            console_sessions.insert().values(
                id_hash=auth.token_hash(session_id),
                token_id=token.id,
                csrf=secrets.token_urlsafe(32),
                created_at=now,
                last_seen=now,
                expires_at=now + SESSION_ABSOLUTE_MS,
            )
        )
        audit.append(
            conn, actor=token.name, action="signin", target=token.name, detail={"client": client}, now_ms=now
        )
    return session_id


def session(storage: Storage, session_id: str, now: int) -> SessionInfo | None:
    """The live session with this id, else None (expired, idle too long, signed out, token revoked/expired)."""
    id_hash = auth.token_hash(session_id)
    query = (
        sa.select(
            console_sessions.c.token_id,
            console_sessions.c.csrf,
            console_sessions.c.last_seen,
            console_sessions.c.expires_at,
            admin_token_details.c.name,
            admin_token_details.c.role,
            admin_token_details.c.revoked_at,
            admin_token_details.c.expires_at.label("token_expires_at"),
        )
        .select_from(
            console_sessions.join(admin_tokens, admin_tokens.c.id == console_sessions.c.token_id).outerjoin(
                admin_token_details, admin_token_details.c.token_id == admin_tokens.c.id
            )
        )
        .where(console_sessions.c.id_hash == id_hash)
    )
    with storage.engine.connect() as conn:
        row = conn.execute(query).first()
    if row is None or row.expires_at <= now or row.last_seen + SESSION_IDLE_MS <= now:
        return None
    if row.revoked_at is not None or (row.token_expires_at is not None and row.token_expires_at <= now):
        return None
    if now - row.last_seen >= _TOUCH_EVERY_MS:
        with storage.write() as conn:
            conn.execute(
                console_sessions.update().where(console_sessions.c.id_hash == id_hash).values(last_seen=now)
            )
    legacy = row.name is None
    return SessionInfo(
        name=f"legacy-{row.token_id}" if legacy else row.name,
        role="admin" if legacy else check_role(row.role),
        csrf=row.csrf,
        token_id=int(row.token_id),
    )


def end_session(storage: Storage, session_id: str, *, now: int) -> bool:
    """Sign-out: delete the session (audited). False if there was none."""
    id_hash = auth.token_hash(session_id)
    current = session(storage, session_id, now)
    with storage.write() as conn:
        gone = conn.execute(console_sessions.delete().where(console_sessions.c.id_hash == id_hash)).rowcount
        if gone and current is not None:
            audit.append(conn, actor=current.name, action="signout", target=current.name, now_ms=now)
    return bool(gone)


# --- sign-in throttling --------------------------------------------------------------------------------------


def signin_retry_after_ms(storage: Storage, client: str, now: int) -> int:
    """0 if a sign-in from ``client`` may be tried now, else how long until it may."""
    since = now - FAIL_WINDOW_MS
    with storage.engine.connect() as conn:
        mine = conn.execute(
            sa.select(signin_failures.c.at)
            .where(signin_failures.c.client == client, signin_failures.c.at > since)
            .order_by(signin_failures.c.at.desc())
            .limit(FAILS_PER_CLIENT)
        ).all()
        overall = conn.execute(
            sa.select(signin_failures.c.at)
            .where(signin_failures.c.at > since)
            .order_by(signin_failures.c.at.desc())
            .limit(FAILS_OVERALL)
        ).all()
    wait = 0
    # The window frees a try when the oldest of the last N failures leaves it.
    if len(mine) >= FAILS_PER_CLIENT:
        wait = max(wait, mine[-1].at + FAIL_WINDOW_MS - now)
    if len(overall) >= FAILS_OVERALL:
        wait = max(wait, overall[-1].at + FAIL_WINDOW_MS - now)
    return max(0, wait)


def record_failed_signin(storage: Storage, client: str, *, reason: str, now: int) -> None:
    """Count a failed sign-in (and forget failures older than the window). Audited."""
    with storage.write() as conn:
        conn.execute(signin_failures.delete().where(signin_failures.c.at <= now - FAIL_WINDOW_MS))
        conn.execute(signin_failures.insert().values(client=client[:64], at=now))
        audit.append(
            conn,
            actor="-",
            action="signin.fail",
            target="",
            detail={"client": client, "reason": reason},
            now_ms=now,
        )


# --- enrollment secrets --------------------------------------------------------------------------------------


def list_secrets(storage: Storage, now: int) -> list[dict[str, Any]]:
    query = (
        sa.select(
            enroll_secrets, enroll_secret_revocations.c.revoked_at, enroll_secret_revocations.c.revoked_by
        )
        .select_from(
            enroll_secrets.outerjoin(
                enroll_secret_revocations, enroll_secret_revocations.c.secret_id == enroll_secrets.c.id
            )
        )
        .order_by(enroll_secrets.c.id)
    )
    with storage.engine.connect() as conn:
        rows = conn.execute(query).all()
    return [
        {
            "id": row.id,
            "group": row.group_name,
            "uses_left": row.uses_left,
            "created_at": row.created_at,
            "expires_at": row.expires_at,
            "revoked_at": row.revoked_at,
            "revoked_by": row.revoked_by,
            "active": row.revoked_at is None
            and row.uses_left > 0
            and (row.expires_at is None or row.expires_at > now),
        }
        for row in rows
    ]


def record_secret_created(
    storage: Storage, *, group: str, uses: int, expires_at: int | None, actor: str, now: int
) -> None:
    audit.record(
        storage,
        actor=actor,
        action="secret.create",
        target=group,
        detail={"uses": uses, "expires_at": expires_at},
        now_ms=now,
    )


def revoke_secret(storage: Storage, secret_id: int, *, actor: str, now: int) -> None:
    """No further enrollment with this secret (its uses drop to 0; the revocation is kept and audited)."""
    with storage.write() as conn:
        row = conn.execute(
            sa.select(
                enroll_secrets.c.id, enroll_secrets.c.group_name, enroll_secret_revocations.c.revoked_at
            )
            .select_from(
                enroll_secrets.outerjoin(
                    enroll_secret_revocations, enroll_secret_revocations.c.secret_id == enroll_secrets.c.id
                )
            )
            .where(enroll_secrets.c.id == secret_id)
        ).first()
        if row is None:
            raise AccountError(
                f"no enrollment secret has id {secret_id}: see GET /v1/admin/enroll-secrets", 404
            )
        if row.revoked_at is not None:
            raise AccountError(f"enrollment secret {secret_id} is revoked already", 409)
        conn.execute(enroll_secrets.update().where(enroll_secrets.c.id == secret_id).values(uses_left=0))
        conn.execute(
            enroll_secret_revocations.insert().values(secret_id=secret_id, revoked_at=now, revoked_by=actor)
        )
        audit.append(
            conn,
            actor=actor,
            action="secret.revoke",
            target=str(secret_id),
            detail={"group": row.group_name},
            now_ms=now,
        )


# --- devices -------------------------------------------------------------------------------------------------


def _device_query() -> sa.Select[Any]:
    return sa.select(
        devices.c.id,
        devices.c.group_name,
        devices.c.hostname,
        devices.c.os,
        devices.c.enrolled_at,
        devices.c.last_seen,
        devices.c.state,
        devices.c.stage,
        devices.c.stopped,
        devices.c.heartbeat_s,
        devices.c.agent_version,
        devices.c.policy_id,
        devices.c.policy_version,
        devices.c.max_sequence,
        devices.c.revoked,
        device_lifecycle.c.revoked_at,
        device_lifecycle.c.revoked_by,
        device_lifecycle.c.replaced_at,
        device_lifecycle.c.replaced_by,
    ).select_from(devices.outerjoin(device_lifecycle, device_lifecycle.c.device_id == devices.c.id))


def _device_json(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "group": row.group_name,
        "hostname": row.hostname,
        "os": row.os,
        "enrolled_at": row.enrolled_at,
        "last_seen": row.last_seen,
        "state": row.state,
        "stage": row.stage,
        "stopped": bool(row.stopped),
        "heartbeat_s": row.heartbeat_s,
        "agent_version": row.agent_version,
        "policy_id": row.policy_id,
        "policy_version": row.policy_version,
        "max_sequence": row.max_sequence,
        "revoked": bool(row.revoked),
        "revoked_at": row.revoked_at,
        "revoked_by": row.revoked_by,
        "replaced": row.replaced_at is not None,
        "replaced_at": row.replaced_at,
        "replaced_by": row.replaced_by,
    }


def device(storage: Storage, device_id: str) -> dict[str, Any] | None:
    with storage.engine.connect() as conn:
        row = conn.execute(_device_query().where(devices.c.id == device_id)).first()
    return _device_json(row) if row is not None else None


def list_devices(storage: Storage) -> list[dict[str, Any]]:
    with storage.engine.connect() as conn:
        return [_device_json(row) for row in conn.execute(_device_query().order_by(devices.c.id))]


def replaced_device_ids() -> sa.Select[Any]:
    """The ids of devices marked replaced, for ``WHERE devices.id NOT IN (...)`` in the console's counts."""
    return sa.select(device_lifecycle.c.device_id).where(device_lifecycle.c.replaced_at.is_not(None))


def _lifecycle_row(conn: Connection, device_id: str) -> Any:
    row = conn.execute(_device_query().where(devices.c.id == device_id)).first()
    if row is None:
        raise AccountError(f"no device has id {device_id!r}: see `mamori server device list`", 404)
    return row


def _set_lifecycle(conn: Connection, device_id: str, **values: Any) -> None:
    """Write ``values`` into the device's lifecycle row, making the row if it has none yet."""
    exists = conn.execute(
        sa.select(device_lifecycle.c.device_id).where(device_lifecycle.c.device_id == device_id)
    ).first()
    if exists is not None:
        conn.execute(
            device_lifecycle.update().where(device_lifecycle.c.device_id == device_id).values(**values)
        )
    else:
        conn.execute(device_lifecycle.insert().values(device_id=device_id, **values))


def revoke_device(storage: Storage, device_id: str, *, actor: str, now: int) -> dict[str, Any]:
    """The device's token is refused from its next call on (401). Audited; its history stays."""
    with storage.write() as conn:
        row = _lifecycle_row(conn, device_id)
        if row.revoked:
            raise AccountError(f"device {device_id} is revoked already", 409)
        conn.execute(devices.update().where(devices.c.id == device_id).values(revoked=True))
        _set_lifecycle(conn, device_id, revoked_at=now, revoked_by=actor)
        audit.append(
            conn,
            actor=actor,
            action="device.revoke",
            target=device_id,
            detail={"hostname": row.hostname, "group": row.group_name},
            now_ms=now,
        )
        return _device_json(_lifecycle_row(conn, device_id))


def mark_replaced(storage: Storage, device_id: str, *, actor: str, now: int) -> dict[str, Any]:
    """The PC was replaced: it leaves the fleet's silent/stopped counts, its token is revoked (the old PC
    must not keep reporting as a member of the fleet) and its history stays. Audited."""
    with storage.write() as conn:
        row = _lifecycle_row(conn, device_id)
        if row.replaced_at is not None:
            raise AccountError(f"device {device_id} is marked replaced already", 409)
        values: dict[str, Any] = {"replaced_at": now, "replaced_by": actor}
        if not row.revoked:
            conn.execute(devices.update().where(devices.c.id == device_id).values(revoked=True))
            values.update(revoked_at=now, revoked_by=actor)
        _set_lifecycle(conn, device_id, **values)
        audit.append(
            conn,
            actor=actor,
            action="device.replaced",
            target=device_id,
            detail={"hostname": row.hostname, "group": row.group_name},
            now_ms=now,
        )
        return _device_json(_lifecycle_row(conn, device_id))


def delete_device(storage: Storage, device_id: str, *, actor: str, now: int) -> dict[str, int]:
    """Remove the device and everything stored about it (its events, gaps and any other table keyed by
    ``device_id``, raised alerts excepted). Audited with the counts removed; the audit log keeps the record."""
    with storage.write() as conn:
        row = _lifecycle_row(conn, device_id)
        removed: dict[str, int] = {}
        for table in metadata.sorted_tables:
            if table.name not in _KEPT_ON_DELETE and "device_id" in table.c:
                removed[table.name] = conn.execute(
                    table.delete().where(table.c.device_id == device_id)
                ).rowcount
        conn.execute(devices.delete().where(devices.c.id == device_id))
        audit.append(
            conn,
            actor=actor,
            action="device.delete",
            target=device_id,
            detail={"hostname": row.hostname, "group": row.group_name, "removed": removed},
            now_ms=now,
        )
    return removed
