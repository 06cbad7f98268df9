"""`mamori server run|migrate|enroll-secret create|list|revoke|admin-token create|list|revoke|device
list|revoke|replaced|delete|audit verify|export|policy publish` (SPEC.md, Command line)."""

from __future__ import annotations

import argparse
import json
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import MamoriError

if TYPE_CHECKING:
    from server.settings import Settings
    from server.storage import Storage


class ServerCommandError(MamoriError):
    """A server command cannot run as asked."""


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db", default=None, help="database URL (default: server.toml db, $MAMORI_DB_URL, SQLite)"
    )
    parser.add_argument("--config", type=Path, default=None, help="server.toml")


def register(subparsers: Any) -> None:
    run = subparsers.add_parser("run", help="serve the API and dashboard")
    _common(run)
    run.add_argument("--listen", default=None, help="HOST:PORT (default 127.0.0.1:8443)")
    run.set_defaults(func=cmd_run)

    migrate = subparsers.add_parser("migrate", help="create or upgrade the database schema")
    _common(migrate)
    migrate.set_defaults(func=cmd_migrate)

    secret = subparsers.add_parser("enroll-secret", help="enrollment secrets for `mamori agent enroll`")
    secret_cmds = secret.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = secret_cmds.add_parser("create", help="create an enrollment secret (printed once)")
    _common(create)
    create.add_argument("--uses", type=int, default=1, help="how many devices may enroll with it (default 1)")
    create.add_argument(
        "--expires", default="7d", help='lifetime, e.g. "1h", "7d" (default 7d); "never" for none'
    )
    create.add_argument("--group", default="default", help="policy group of the devices enrolled with it")
    create.add_argument("--json", action="store_true")
    create.set_defaults(func=cmd_enroll_secret)
    secret_list = secret_cmds.add_parser(
        "list", help="enrollment secrets: id, group, uses left, expiry, state"
    )
    _common(secret_list)
    secret_list.add_argument("--json", action="store_true")
    secret_list.set_defaults(func=cmd_enroll_secret_list)
    secret_revoke = secret_cmds.add_parser("revoke", help="no further enrollment with this secret")
    _common(secret_revoke)
    secret_revoke.add_argument("id", type=int, help="secret id (see enroll-secret list)")
    secret_revoke.set_defaults(func=cmd_enroll_secret_revoke)

    admin = subparsers.add_parser("admin-token", help="admin tokens for the admin API and dashboard")
    admin_cmds = admin.add_subparsers(dest="action", metavar="ACTION", required=True)
    admin_create = admin_cmds.add_parser("create", help="create a named admin token (printed once)")
    _common(admin_create)
    admin_create.add_argument(
        "--name", default=None, help="who or what uses it, e.g. alice (default admin-XXXX)"
    )
    admin_create.add_argument(
        "--role", choices=("viewer", "admin"), default="admin", help="viewer reads; admin also acts (default)"
    )
    admin_create.add_argument("--expires", default="never", help='lifetime, e.g. "90d", "12h"; default never')
    admin_create.add_argument("--json", action="store_true")
    admin_create.set_defaults(func=cmd_admin_token)
    admin_list = admin_cmds.add_parser("list", help="admin tokens: id, name, role, expiry, revoked")
    _common(admin_list)
    admin_list.add_argument("--json", action="store_true")
    admin_list.set_defaults(func=cmd_admin_token_list)
    admin_revoke = admin_cmds.add_parser("revoke", help="revoke an admin token and end its console sessions")
    _common(admin_revoke)
    admin_revoke.add_argument("id", type=int, help="token id (see admin-token list)")
    admin_revoke.set_defaults(func=cmd_admin_token_revoke)

    device = subparsers.add_parser("device", help="enrolled devices: list, revoke, mark replaced, delete")
    device_cmds = device.add_subparsers(dest="action", metavar="ACTION", required=True)
    device_list = device_cmds.add_parser("list", help="devices with their lifecycle state")
    _common(device_list)
    device_list.add_argument("--json", action="store_true")
    device_list.set_defaults(func=cmd_device_list)
    for name, text in (
        ("revoke", "refuse the device's token from its next call on (401); its history stays"),
        ("replaced", "mark the PC replaced: revoked, out of the silent/stopped counts, history kept"),
        ("delete", "remove the device and all it stored (events, gaps, state)"),
    ):
        change = device_cmds.add_parser(name, help=text)
        _common(change)
        change.add_argument("id", help="device id (see device list)")
        change.set_defaults(func=cmd_device_change, change=name)

    audit_parser = subparsers.add_parser("audit", help="the tamper-evident admin audit log")
    audit_cmds = audit_parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    verify = audit_cmds.add_parser(
        "verify", help="recompute the hash chain; exit 1 naming the first broken entry"
    )
    _common(verify)
    verify.set_defaults(func=cmd_audit_verify)
    export = audit_cmds.add_parser(
        "export", help="every entry as NDJSON with its hashes (stdout or --output)"
    )
    _common(export)
    export.add_argument("--output", "-o", type=Path, default=None)
    export.set_defaults(func=cmd_audit_export)

    policy = subparsers.add_parser("policy", help="policies served to agents")
    policy_cmds = policy.add_subparsers(dest="action", metavar="ACTION", required=True)
    publish = policy_cmds.add_parser("publish", help="verify a signed bundle and serve it to a group")
    _common(publish)
    publish.add_argument("bundle", type=Path, help="bundle made by `mamori policy sign`")
    publish.add_argument("--group", default="default")
    publish.add_argument(
        "--pub", type=Path, action="append", default=[], help="trusted public key (repeatable)"
    )
    publish.set_defaults(func=cmd_policy_publish)

    from server import evidence_cli  # export and report: their own module

    evidence_cli.register(subparsers)


def parse_lifetime(text: str) -> timedelta | None:
    """ "7d", "12h", "90m", "1h30m" -> timedelta; "never" -> None."""
    value = text.strip().lower()
    if value == "never":
        return None
    try:
        if value.endswith("d") and value[:-1].isdigit():
            return timedelta(days=int(value[:-1]))
        from policy.model import parse_duration

        seconds = parse_duration(value)
    except ValueError as err:
        raise ServerCommandError(f'--expires {text!r}: write e.g. "1h", "7d" or "never"') from err
    if seconds <= 0:
        raise ServerCommandError("--expires must be longer than 0s")
    return timedelta(seconds=seconds)


def _settings(args: argparse.Namespace) -> Settings:
    from server.settings import load_settings

    return load_settings(args.config).with_db(args.db)


DB_URL_EXAMPLES = "sqlite:////var/lib/mamori/mamori.db or postgresql+psycopg://mamori@db.example.com/mamori"


def _storage(settings: Settings, *, require_current: bool = True) -> Storage:
    from server.migrate import current_revision, head_revision

    storage = open_storage(settings.db_url)
    if require_current:
        try:
            current = current_revision(storage.engine)
        except Exception as err:
            raise ServerCommandError(database_problem(err, settings.db_url)) from err
        if current != head_revision():
            raise ServerCommandError(
                f"database schema is at {current or 'nothing'}, expected {head_revision()}; run `mamori server migrate`"
            )
    return storage


def open_storage(db_url: str) -> Storage:
    """The storage for ``db_url``; a URL SQLAlchemy cannot use is one line naming what to write instead."""
    import sqlalchemy as sa

    from server.storage import Storage

    try:
        return Storage(db_url)
    except sa.exc.NoSuchModuleError as err:
        scheme = db_url.split(":", 1)[0]
        raise ServerCommandError(
            f"--db {_redacted(db_url)}: no database driver for {scheme!r}; write e.g. {DB_URL_EXAMPLES}"
        ) from err
    except sa.exc.ArgumentError as err:
        raise ServerCommandError(
            f"--db {_redacted(db_url)}: not a database URL; write e.g. {DB_URL_EXAMPLES}"
        ) from err
    except ImportError as err:
        raise ServerCommandError(
            f"--db {_redacted(db_url)}: the database driver is not installed ({err.name}); "
            "install the server extra: pip install 'mamori[server]'"
        ) from err


def database_problem(err: BaseException, db_url: str) -> str:
    """One line: which database, what went wrong, and the fix (psycopg's multi-line text reduced to its cause)."""
    import sqlalchemy as sa

    where = _redacted(db_url)
    try:
        url = sa.engine.make_url(db_url)
        if url.get_backend_name() == "postgresql":
            where = f"PostgreSQL at {url.host or 'localhost'}:{url.port or 5432} (database {url.database})"
        elif url.get_backend_name() == "sqlite":
            where = f"SQLite file {url.database}"
    except sa.exc.ArgumentError:
        pass
    text = " ".join(str(getattr(err, "orig", None) or err).split()).lower()
    if "password authentication failed" in text or "no password supplied" in text:
        return f"cannot log in to {where}: wrong user or password; fix them in --db or db in server.toml"
    if "does not exist" in text and "database" in text:
        return f"{where} does not exist; create it (createdb) or fix the database name in --db"
    if "unable to open database file" in text:
        return f"cannot open {where}: the folder is missing or not writable; create it or fix --db"
    if any(s in text for s in ("connection refused", "could not connect", "connection failed", "timeout")):
        return (
            f"cannot connect to {where}: nothing answers there; start PostgreSQL, or fix the host and port "
            "in --db or db in server.toml"
        )
    if "could not translate host name" in text or "name or service not known" in text:
        return f"cannot connect to {where}: unknown host name; fix the host in --db or db in server.toml"
    return f"cannot open {where}: {type(err).__name__}; check --db and that the database server runs"


def _redacted(db_url: str) -> str:
    """The URL without its password (it may be printed to a shared terminal or log)."""
    try:
        import sqlalchemy as sa

        return sa.engine.make_url(db_url).render_as_string(hide_password=True)
    except Exception:
        return db_url.rsplit("@", maxsplit=1)[-1] if "@" in db_url else db_url


def sqlite_file(db_url: str) -> str | None:
    import sqlalchemy as sa

    try:
        url = sa.engine.make_url(db_url)
    except sa.exc.ArgumentError:
        return None
    return url.database if url.get_backend_name() == "sqlite" and url.database else None


def cmd_migrate(args: argparse.Namespace) -> int:
    from server.migrate import current_revision, head_revision, upgrade

    settings = _settings(args)
    storage = _storage(settings, require_current=False)
    try:
        before = current_revision(storage.engine)
        upgrade(storage.engine)
    except Exception as err:
        import sqlalchemy as sa

        if isinstance(err, sa.exc.SQLAlchemyError):
            raise ServerCommandError(f"migration failed: {database_problem(err, settings.db_url)}") from err
        raise
    where = sqlite_file(settings.db_url)
    print(f"database at {head_revision()} (was {before or 'empty'})")
    print(f"SQLite file: {where}" if where else f"database: {_redacted(settings.db_url)}")
    return 0


def cmd_enroll_secret(args: argparse.Namespace) -> int:
    from core.clock import SystemClock
    from server import auth
    from server.storage import ms

    if args.uses < 1:
        raise ServerCommandError("--uses must be at least 1")
    lifetime = parse_lifetime(args.expires)
    now = SystemClock().now()
    expires = now + lifetime if lifetime else None
    storage = _storage(_settings(args))
    secret = auth.new_token(auth.SECRET_PREFIX)
    storage.create_enroll_secret(
        auth.token_hash(secret), args.group, args.uses, ms(expires) if expires else None, ms(now)
    )
    from server import accounts

    accounts.record_secret_created(
        storage,
        group=args.group,
        uses=args.uses,
        expires_at=ms(expires) if expires else None,
        actor=_actor(),
        now=ms(now),
    )
    if args.json:
        doc = {
            "secret": secret,
            "uses": args.uses,
            "group": args.group,
            "expires": expires.isoformat() if expires else None,
        }
        print(json.dumps(doc))
    else:
        print(secret)
        until = expires.isoformat(timespec="seconds") if expires else "never"
        print(f"# {args.uses} use(s), group {args.group}, expires {until}; shown only once", flush=True)
    return 0


def _actor() -> str:
    """Who acts from the command line, for the audit log: the operating-system account."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _now_ms() -> int:
    from core.clock import SystemClock
    from server.storage import ms

    return ms(SystemClock().now())


def _when(value: int | None) -> str:
    from datetime import UTC, datetime

    if value is None:
        return "-"
    return datetime.fromtimestamp(value / 1000, UTC).isoformat(timespec="seconds")


def cmd_admin_token(args: argparse.Namespace) -> int:
    import secrets

    from server import accounts

    lifetime = parse_lifetime(args.expires)
    storage = _storage(_settings(args))
    name = args.name or f"admin-{secrets.token_hex(2)}"
    expires_in = int(lifetime.total_seconds() * 1000) if lifetime else None
    try:
        token, info = accounts.create_token(
            storage, name=name, role=args.role, expires_in_ms=expires_in, actor=_actor(), now=_now_ms()
        )
    except accounts.AccountError as err:
        raise ServerCommandError(str(err)) from err
    if args.json:
        print(json.dumps({"token": token, "id": info.id, "name": info.name, "role": info.role}))
    else:
        import sys

        print(token, flush=True)
        # On stderr: stdout stays the token alone, as scripts read it (TOKEN=$(mamori server admin-token create)).
        print(
            f"# id {info.id}, name {info.name}, role {info.role}, expires {_when(info.expires_at)}; "
            "shown only once",
            file=sys.stderr,
        )
    return 0


def cmd_admin_token_list(args: argparse.Namespace) -> int:
    from server import accounts

    now = _now_ms()
    tokens = accounts.list_tokens(_storage(_settings(args)))
    if args.json:
        print(json.dumps([t.as_json(now) for t in tokens]))
        return 0
    print(f"{'ID':>4}  {'NAME':<24} {'ROLE':<7} {'EXPIRES':<26} STATE")
    for t in tokens:
        state = "revoked" if t.revoked_at is not None else ("active" if t.active(now) else "expired")
        print(f"{t.id:>4}  {t.name:<24} {t.role:<7} {_when(t.expires_at):<26} {state}")
    return 0


def cmd_admin_token_revoke(args: argparse.Namespace) -> int:
    from server import accounts

    try:
        info = accounts.revoke_token(_storage(_settings(args)), args.id, actor=_actor(), now=_now_ms())
    except accounts.AccountError as err:
        raise ServerCommandError(str(err), exit_code=1) from err
    print(f"revoked admin token {info.id} ({info.name})")
    return 0


def cmd_enroll_secret_list(args: argparse.Namespace) -> int:
    from server import accounts

    items = accounts.list_secrets(_storage(_settings(args)), _now_ms())
    if args.json:
        print(json.dumps(items))
        return 0
    print(f"{'ID':>4}  {'GROUP':<16} {'USES LEFT':>9}  {'EXPIRES':<26} STATE")
    for item in items:
        state = (
            "revoked"
            if item["revoked_at"] is not None
            else ("active" if item["active"] else "used up/expired")
        )
        print(
            f"{item['id']:>4}  {item['group']:<16} {item['uses_left']:>9}  {_when(item['expires_at']):<26} {state}"
        )
    return 0


def cmd_enroll_secret_revoke(args: argparse.Namespace) -> int:
    from server import accounts

    try:
        accounts.revoke_secret(_storage(_settings(args)), args.id, actor=_actor(), now=_now_ms())
    except accounts.AccountError as err:
        raise ServerCommandError(str(err), exit_code=1) from err
    print(f"revoked enrollment secret {args.id}")
    return 0


def cmd_device_list(args: argparse.Namespace) -> int:
    from server import accounts

    items = accounts.list_devices(_storage(_settings(args)))
    if args.json:
        print(json.dumps(items, ensure_ascii=False))
        return 0
    print(f"{'ID':<26} {'HOST':<24} {'GROUP':<12} {'LAST SEEN':<26} STATE")
    for d in items:
        state = "replaced" if d["replaced"] else ("revoked" if d["revoked"] else "active")
        print(
            f"{d['id']:<26} {(d['hostname'] or '-')[:24]:<24} {d['group']:<12} {_when(d['last_seen']):<26} {state}"
        )
    return 0


def cmd_device_change(args: argparse.Namespace) -> int:
    from server import accounts

    storage = _storage(_settings(args))
    actor, now = _actor(), _now_ms()
    try:
        if args.change == "revoke":
            accounts.revoke_device(storage, args.id, actor=actor, now=now)
            print(f"revoked device {args.id}: its next call is refused (401)")
        elif args.change == "replaced":
            accounts.mark_replaced(storage, args.id, actor=actor, now=now)
            print(f"marked device {args.id} replaced (revoked; its history is kept)")
        else:
            removed = accounts.delete_device(storage, args.id, actor=actor, now=now)
            print(f"deleted device {args.id} ({removed.get('events', 0)} events)")
    except accounts.AccountError as err:
        raise ServerCommandError(str(err), exit_code=1) from err
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from server import audit

    storage = _storage(_settings(args))
    checked, broken = audit.verify(storage)
    if broken is not None:
        raise ServerCommandError(
            f"audit log broken at {broken} ({checked} entries before it verify); "
            "restore the database from a backup or keep the export as evidence",
            exit_code=1,
        )
    head_id, head_hash = audit.head(storage)
    print(f"audit log intact: {checked} entries, head {head_id} {head_hash}")
    return 0


def cmd_audit_export(args: argparse.Namespace) -> int:
    import sys

    from server import audit

    storage = _storage(_settings(args))
    audit.record(storage, actor=_actor(), action="audit.export", now_ms=_now_ms())
    out = args.output.open("w", encoding="utf-8") if args.output else sys.stdout
    try:
        for entry in audit.iter_entries(storage):
            out.write(json.dumps(entry.as_json(), ensure_ascii=False, separators=(",", ":")) + "\n")
    finally:
        if args.output:
            out.close()
    return 0


def cmd_policy_publish(args: argparse.Namespace) -> int:
    from fastapi import HTTPException

    from core.clock import SystemClock
    from policy.keys import load_trusted_keys
    from server.publish import publish_policy

    settings = _settings(args)
    keys = load_trusted_keys([*args.pub, *settings.trusted_keys])
    if not keys:
        raise ServerCommandError("no trusted keys: pass --pub KEY.pub or set trusted_keys in server.toml")
    try:
        bundle = args.bundle.read_bytes()
    except OSError as err:
        raise ServerCommandError(f"{args.bundle}: cannot read bundle ({err.strerror or err})") from err
    storage = _storage(settings)
    try:
        published = publish_policy(storage, keys, bundle, args.group, SystemClock().now(), actor=_actor())
    except HTTPException as err:
        raise ServerCommandError(f"{args.bundle}: {err.detail}", exit_code=1) from err
    print(f"published {published.policy_id} version {published.version} to group {published.group}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    import uvicorn

    from core.clock import SystemClock
    from server.app import create_app, shorten_gil_switch_interval

    shorten_gil_switch_interval()
    settings = _settings(args)
    listen = args.listen or settings.listen
    host, _, port_text = listen.rpartition(":")
    if not host or not port_text.isdigit():
        raise ServerCommandError(f"--listen {listen!r}: write HOST:PORT, e.g. 127.0.0.1:8443")
    storage = _storage(settings)
    ssl: dict[str, Any] = {}
    if settings.tls_cert and settings.tls_key:
        ssl = {"ssl_certfile": str(settings.tls_cert), "ssl_keyfile": str(settings.tls_key)}
    target: Any
    if settings.workers > 1:
        # Worker processes build their own app from the environment (server/asgi.py).
        import os

        from server.settings import ENV_CONFIG, ENV_DB

        storage.dispose()
        if args.config is not None:
            os.environ[ENV_CONFIG] = str(args.config)
        os.environ[ENV_DB] = settings.db_url
        target = "server.asgi:app_from_environment"
        ssl.update(factory=True, workers=settings.workers)
    else:
        target = create_app(settings, storage, SystemClock())
    scheme = "https" if settings.tls_cert and settings.tls_key else "http"
    shown = host.strip("[]")
    shown = "127.0.0.1" if shown in ("0.0.0.0", "::") else shown
    print(
        f"mamori server listening on {scheme}://{host}:{port_text} (dashboard {scheme}://{shown}:{port_text}/)"
    )
    where = sqlite_file(settings.db_url)
    print(f"database: {'SQLite file ' + where if where else _redacted(settings.db_url)}", flush=True)
    if scheme == "http":
        import sys

        print(
            "warning: plain HTTP: device tokens and events cross the network unencrypted; set tls_cert and "
            "tls_key in server.toml, or put a TLS reverse proxy in front (agents enroll over http:// only "
            "with --insecure-http)",
            file=sys.stderr,
            flush=True,
        )
    uvicorn.run(
        target,
        host=host.strip("[]"),
        port=int(port_text),
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=10,
        **ssl,
    )
    return 0
