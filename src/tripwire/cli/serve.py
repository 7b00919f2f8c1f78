"""``tripwire serve | watch | keys create|list|revoke``: the runtime monitors, as a service or
in-process, and their API keys.

These need the ``runtime`` extra (``pip install 'tripwire[runtime]'``); without it each command
stops with exit code 2 naming it. Bad input prints one line and exits 2; nothing is written.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from tripwire.cli._app import App, needs_extra
from tripwire.cli._inputs import check_in_file, check_out_file
from tripwire.cli._options import Json
from tripwire.cli._output import err, out, print_json
from tripwire.errors import TripwireError, UsageError

if TYPE_CHECKING:
    from tripwire.runtime.monitors.base import Monitor

app = App()
keys_app = App(help="API keys (one tenant per key).")

DEFAULT_DB = "sqlite:///tripwire.db"
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
SQLITE_HEADER = b"SQLite format 3\x00"
ProbeSpec = Annotated[
    str | None, typer.Option(help="white-box probe monitor: MODEL,DETECTOR,LAYER")
]


def _database_error(exc: Exception) -> UsageError:
    """An unreachable server or bad credentials: one line, exit 2."""
    first = (str(exc).splitlines() or [""])[0]
    return UsageError(f"cannot open database: {type(exc).__name__}: {first}")


def _migrated(db: str) -> Any:
    """An engine on ``db`` with every migration applied; a database that cannot be opened is one
    line (exit 2)."""
    from tripwire.runtime.store import make_engine, migrate

    try:
        engine = make_engine(db)
        migrate(engine)
    except TripwireError:
        raise
    except Exception as exc:
        raise _database_error(exc) from exc
    return engine


def check_sqlite_file(path: Path, flag: str = "--db") -> None:
    """A SQLite file to open or create: a writable place, and a SQLite database if it exists."""
    check_out_file(path, flag)
    if path.is_file() and path.stat().st_size > 0:
        with path.open("rb") as f:
            if f.read(len(SQLITE_HEADER)) != SQLITE_HEADER:
                raise UsageError(
                    f"{flag} {path} is not a SQLite database; give a new file or a tripwire one"
                )


def check_db_url(url: str) -> None:
    """A ``sqlite:///FILE`` URL's file is checked as :func:`check_sqlite_file` does."""
    from tripwire.runtime.store import normalise_url

    norm = normalise_url(url)
    if norm.startswith("sqlite"):
        from sqlalchemy.engine import make_url

        path = make_url(norm).database
        if path and path != ":memory:":
            check_sqlite_file(Path(path))


def _remove_sqlite(path: Path) -> None:
    """Remove a SQLite file this invocation created, with its journal files."""
    suffixes = ("-wal", "-shm", "-journal", ".writer.lock")
    for p in (path, *(path.with_name(path.name + s) for s in suffixes)):
        p.unlink(missing_ok=True)


def parse_llm_monitor(spec: str) -> Callable[[], Monitor]:
    """``NAME=BASE_URL@MODEL[:trusted]`` -> a factory of :class:`LLMMonitor`."""
    from tripwire.runtime.monitors.llm import LLMMonitor

    name, eq, rest = spec.partition("=")
    url, at, model = rest.rpartition("@")
    trusted = model.endswith(":trusted")
    model = model.removesuffix(":trusted")
    if not (eq and at and name and url and model):
        raise UsageError(f"--llm-monitor {spec!r}: expected NAME=BASE_URL@MODEL[:trusted]")
    LLMMonitor(name, url, model)  # validates the URL now, not at the first event
    key = os.environ.get("TRIPWIRE_LLM_KEY")
    return lambda: LLMMonitor(name, url, model, trusted=trusted, api_key=key)


def parse_probe(spec: str) -> Callable[[], Monitor]:
    """``MODEL,DETECTOR,LAYER`` (a model spec, a saved detector path, a block index)."""
    from tripwire.runtime.monitors.probe import ProbeMonitor

    parts = spec.split(",")
    if len(parts) != 3 or not parts[2].lstrip("-").isdigit():
        raise UsageError(f"--probe {spec!r}: expected MODEL,DETECTOR,LAYER")
    mon = ProbeMonitor.from_files(parts[0], parts[1], int(parts[2]))  # load once, fail early
    return lambda: mon


@app.command()
def serve(
    db: Annotated[
        str, typer.Option(help="sqlite:///FILE (default) or postgresql://...")
    ] = DEFAULT_DB,
    host: Annotated[str, typer.Option(help="interface to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535)] = 8400,
    policy: Annotated[
        Path | None, typer.Option(help="YAML rules policy (default: shipped)")
    ] = None,
    audit_fraction: Annotated[float, typer.Option(min=0.0001, max=0.5)] = 0.02,
    honeypot_rate: Annotated[float, typer.Option(min=0.0, max=1.0)] = 0.02,
    no_drift: Annotated[bool, typer.Option("--no-drift", help="turn behaviour-shift off")] = False,
    drift_baseline: Annotated[int, typer.Option(min=30, help="baseline events per agent")] = 300,
    drift_arl0: Annotated[
        float, typer.Option(min=10, help="target events between false drift alarms, per agent")
    ] = 5000.0,
    upstream: Annotated[
        str | None, typer.Option(help="OpenAI-compatible base URL (…/v1) for proxy mode")
    ] = None,
    llm_monitor: Annotated[
        list[str] | None,
        typer.Option(help="NAME=BASE_URL@MODEL[:trusted], repeatable; key from TRIPWIRE_LLM_KEY"),
    ] = None,
    probe: ProbeSpec = None,
    honest: Annotated[
        Path | None,
        typer.Option(help="honest traffic (JSONL/OTLP): calibrate monitors and thresholds on it"),
    ] = None,
    body_timeout: Annotated[
        float, typer.Option(min=0.1, max=600, help="seconds a request body may take (then 408)")
    ] = 10.0,
    log_level: Annotated[str, typer.Option()] = "warning",
) -> None:
    """Run the monitor service (migrates the database first); Ctrl-C stops it."""
    if log_level.lower() not in LOG_LEVELS:
        raise UsageError(f"unknown --log-level {log_level!r}: use one of {', '.join(LOG_LEVELS)}")
    _check_host(host)
    check_in_file(policy, "--policy")
    check_in_file(honest, "--honest", stdin=True)
    with needs_extra("runtime", "serve"):
        import uvicorn

        from tripwire.runtime.app import create_app
        from tripwire.runtime.monitors.rules import load_policy
        from tripwire.runtime.pipeline import RuntimeConfig

    monitors = [parse_llm_monitor(spec) for spec in llm_monitor or []]
    if probe:
        monitors.append(parse_probe(probe))
    load_policy(policy)
    cfg = RuntimeConfig(
        policy=policy,
        audit_fraction=audit_fraction,
        honeypot_rate=honeypot_rate,
        drift=not no_drift,
        drift_baseline=drift_baseline,
        drift_arl0=drift_arl0,
        upstream=upstream,
        upstream_key=os.environ.get("TRIPWIRE_UPSTREAM_KEY"),
        extra_monitors=monitors,
    )
    if honest is not None:
        from tripwire.runtime.pipeline import calibrate_on_honest
        from tripwire.runtime.watch import read_trace

        cfg = calibrate_on_honest(cfg, read_trace(honest))
        t = cfg.thresholds
        err.print(
            f"thresholds from honest traffic: flag {t.flag:.3f}, defer {t.defer:.3f}, "
            f"block {t.block:.3f}",
            highlight=False,
        )
    check_db_url(db)
    from tripwire.runtime.store import writer_lock

    held = writer_lock(db)  # SQLite: one writer process; held until this process ends
    engine = _migrated(db)
    where = engine.url.render_as_string(hide_password=True)
    err.print(f"listening on http://{host}:{port} (db {where})", highlight=False, soft_wrap=True)
    sys.stderr.flush()
    uvicorn.run(
        create_app(engine, cfg, body_timeout),
        host=host,
        port=port,
        log_level=log_level.lower(),
        access_log=False,
    )
    if held is not None:
        held.release()


def _check_host(host: str) -> None:
    """``--host`` is an address or a name this machine resolves."""
    import socket

    try:
        socket.getaddrinfo(host, None)
    except (socket.gaierror, UnicodeError):
        raise UsageError(f"--host {host!r} is not an address or a known host name") from None


@keys_app.command("create")
def keys_create(
    db: Annotated[str, typer.Option(help="database URL")] = DEFAULT_DB,
    tenant: Annotated[str, typer.Option(help="tenant the key belongs to")] = "default",
) -> None:
    """Create an API key for a tenant and print it (it is stored only as a hash)."""
    with needs_extra("runtime", "keys create"):
        from tripwire.runtime.keys import check_tenant, create_key

    check_tenant(tenant)  # before the database is opened (or created)
    check_db_url(db)
    engine = _migrated(db)
    try:
        key = create_key(engine, tenant)
    except TripwireError:
        raise
    except Exception as exc:
        raise _database_error(exc) from exc
    typer.echo(key)


def _key_engine(db: str) -> Any:
    """The engine of an existing, migrated key database (a missing SQLite file is not created)."""
    from sqlalchemy.engine import make_url

    from tripwire.runtime.store import normalise_url

    url = make_url(normalise_url(db))
    if url.get_backend_name() == "sqlite" and not Path(url.database or "").is_file():
        raise UsageError(f"--db {db!r}: no such database; `tripwire keys create` makes one")
    return _migrated(db)


@keys_app.command("list")
def keys_list(
    db: Annotated[str, typer.Option(help="database URL")] = DEFAULT_DB,
    as_json: Json = False,
) -> None:
    """List the API keys: id, prefix, tenant, created, status (active or revoked)."""
    with needs_extra("runtime", "keys list"):
        from tripwire.runtime.keys import list_keys

    rows = list_keys(_key_engine(db))
    if as_json:
        print_json(
            [{**r, "created_at": r["created_at"].isoformat(), "revoked_at": _iso(r)} for r in rows]
        )
        return
    table = Table(title=f"API keys: {len(rows)}")
    for col in ("id", "prefix", "tenant", "created", "status"):
        table.add_column(col, overflow="fold")
    for r in rows:
        status = r["status"] + (f" {_iso(r)}" if r["revoked_at"] else "")
        table.add_row(
            str(r["id"]),
            r["prefix"],
            escape(r["tenant"]),
            r["created_at"].strftime("%Y-%m-%d %H:%M"),
            status,
        )
    out.print(table)


def _iso(row: dict[str, Any]) -> str | None:
    at = row["revoked_at"]
    return None if at is None else str(at.isoformat(timespec="seconds"))


@keys_app.command("revoke")
def keys_revoke(
    key: Annotated[str, typer.Argument(help="the key's id or prefix (see `keys list`)")],
    db: Annotated[str, typer.Option(help="database URL")] = DEFAULT_DB,
) -> None:
    """Revoke an API key: refused from the next request on, with its dashboard sessions."""
    with needs_extra("runtime", "keys revoke"):
        from tripwire.runtime.keys import revoke_key

    key_id, prefix, already = revoke_key(_key_engine(db), key)
    state = "was already revoked" if already else "revoked"
    typer.echo(f"key {key_id} (tw_{prefix}_…) {state}")


def _print_watch(result: dict[str, Any], flagged: list[dict[str, Any]]) -> None:
    if flagged:
        table = Table(title=f"flagged events: {len(flagged)} of {result['events']}")
        for col in ("#", "agent", "event", "action", "score", "reasons"):
            table.add_column(col, overflow="fold")
        for f in flagged:
            table.add_row(
                str(f["position"]),
                escape(f["agent"]),
                escape(f["event"]),
                f["action"],
                f"{f['score']:.2f}",
                escape(", ".join(f["reasons"]) or "—"),
            )
        out.print(table)
    else:
        out.print(f"no event of {result['events']} was flagged")
    actions = ", ".join(f"{a} {n}" for a, n in sorted(result["actions"].items()))
    alerts = ", ".join(f"{k} {n}" for k, n in sorted(result["alerts"].items())) or "none"
    out.print(
        f"{result['events']} events ({actions}); alerts: {alerts}; "
        f"{result['seconds']:.1f} s, peak RSS {result['peak_rss_mib']:.0f} MiB; db {result['db']}",
        highlight=False,
        soft_wrap=True,
    )


@app.command()
def watch(
    trace: Annotated[Path, typer.Argument(help="JSONL events, or OTLP JSON trace file; - = stdin")],
    db: Annotated[Path, typer.Option(help="local SQLite file")] = Path("tripwire-watch.db"),
    policy: Annotated[Path | None, typer.Option(help="YAML rules policy")] = None,
    summary: Annotated[Path | None, typer.Option(help="write the JSON summary here")] = None,
    probe: ProbeSpec = None,
    embeddings: Annotated[
        bool, typer.Option("--embeddings", help="windowed MMD on message embeddings (MiniLM)")
    ] = False,
    as_json: Json = False,
) -> None:
    """Run the same monitors in-process (no server) over events, stored in a local SQLite file.

    Prints the flagged events (agent, position in the trace, action, reasons) and a summary;
    --json prints the JSON summary instead.
    """
    with needs_extra("runtime", "watch"):
        from sqlalchemy.exc import SQLAlchemyError

        from tripwire._io import write_json
        from tripwire.runtime.monitors.rules import load_policy
        from tripwire.runtime.pipeline import RuntimeConfig
        from tripwire.runtime.watch import run_watch

    check_in_file(trace, "trace file", stdin=True)
    check_in_file(policy, "--policy")
    check_sqlite_file(db)
    check_out_file(summary, "--summary")
    if summary is not None and summary.absolute() == db.absolute():
        raise UsageError(f"--summary {summary} is the --db file; give another name")
    load_policy(policy)
    extra = [parse_probe(probe)] if probe else []
    cfg = RuntimeConfig(policy=policy, extra_monitors=extra)
    created = not db.exists()
    from tripwire.runtime.store import writer_lock

    held = writer_lock(str(db))  # not while a `serve` (or another watch) writes this file
    try:
        result = run_watch(trace, db, policy, cfg, embeddings=embeddings)
        if summary is not None:
            write_json(summary, result)
    except BaseException as exc:
        if created:  # nothing is left behind by a run that failed
            _remove_sqlite(db)
        if isinstance(exc, SQLAlchemyError):
            raise _database_error(exc) from exc
        raise
    finally:
        if held is not None:
            held.release()
    if as_json:
        print_json(result)
    else:
        from tripwire.runtime.watch import flagged_events

        _print_watch(result, flagged_events(db, result["events"]))


__all__ = [
    "DEFAULT_DB",
    "app",
    "keys_app",
    "keys_create",
    "keys_list",
    "keys_revoke",
    "parse_llm_monitor",
    "parse_probe",
    "serve",
    "watch",
]
