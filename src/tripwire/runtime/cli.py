"""``tripwire serve``, ``tripwire keys create``, ``tripwire watch``: mounted by ``tripwire.cli``.

Bad input prints one line and exits with code 2; nothing is written.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from tripwire.errors import TripwireError, UsageError
from tripwire.runtime.monitors.base import Monitor

app = typer.Typer(
    help="Runtime watch: the monitor service and its in-process twin.",
    no_args_is_help=True,
    add_completion=False,
)
keys_app = typer.Typer(help="API keys (one tenant per key).", no_args_is_help=True)
app.add_typer(keys_app, name="keys")

DEFAULT_DB = "sqlite:///tripwire.db"


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


def _fail(exc: TripwireError) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(exc.exit_code)


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
    probe: Annotated[
        str | None, typer.Option(help="white-box probe monitor: MODEL,DETECTOR,LAYER")
    ] = None,
    honest: Annotated[
        Path | None,
        typer.Option(help="honest traffic (JSONL/OTLP): calibrate monitors and thresholds on it"),
    ] = None,
    log_level: Annotated[str, typer.Option()] = "warning",
) -> None:
    """Run the monitor service (migrates the database first)."""
    import uvicorn

    from tripwire.runtime.app import create_app
    from tripwire.runtime.monitors.rules import load_policy
    from tripwire.runtime.pipeline import RuntimeConfig
    from tripwire.runtime.store import make_engine, migrate

    try:
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
            typer.echo(
                f"thresholds from honest traffic: flag {t.flag:.3f}, defer {t.defer:.3f}, "
                f"block {t.block:.3f}",
                err=True,
            )
        engine = make_engine(db)
        migrate(engine)
    except TripwireError as exc:
        raise _fail(exc) from exc
    except Exception as exc:  # unreachable server, bad credentials
        typer.echo(
            f"error: cannot open database: {type(exc).__name__}: {str(exc).splitlines()[0]}",
            err=True,
        )
        raise typer.Exit(2) from exc
    uvicorn.run(
        create_app(engine, cfg), host=host, port=port, log_level=log_level, access_log=False
    )


@keys_app.command("create")
def keys_create(
    db: Annotated[str, typer.Option(help="database URL")] = DEFAULT_DB,
    tenant: Annotated[str, typer.Option(help="tenant the key belongs to")] = "default",
) -> None:
    """Create an API key for a tenant and print it (it is stored only as a hash)."""
    from tripwire.runtime.keys import create_key
    from tripwire.runtime.store import make_engine, migrate

    try:
        engine = make_engine(db)
        migrate(engine)
        typer.echo(create_key(engine, tenant))
    except TripwireError as exc:
        raise _fail(exc) from exc
    except Exception as exc:
        typer.echo(f"error: cannot open database: {type(exc).__name__}", err=True)
        raise typer.Exit(2) from exc


@app.command()
def watch(
    trace: Annotated[Path, typer.Argument(help="JSONL events, or OTLP JSON trace file; - = stdin")],
    db: Annotated[Path, typer.Option(help="local SQLite file")] = Path("tripwire-watch.db"),
    policy: Annotated[Path | None, typer.Option(help="YAML rules policy")] = None,
    summary: Annotated[Path | None, typer.Option(help="write a JSON summary here")] = None,
    probe: Annotated[
        str | None, typer.Option(help="white-box probe monitor: MODEL,DETECTOR,LAYER")
    ] = None,
    embeddings: Annotated[
        bool, typer.Option("--embeddings", help="windowed MMD on message embeddings (MiniLM)")
    ] = False,
) -> None:
    """Run the same monitors in-process (no server) over events, stored in a local SQLite file."""
    from tripwire.runtime.pipeline import RuntimeConfig
    from tripwire.runtime.watch import run_watch

    try:
        extra = [parse_probe(probe)] if probe else []
        cfg = RuntimeConfig(policy=policy, extra_monitors=extra)
        result = run_watch(trace, db, policy, cfg, embeddings=embeddings)
    except TripwireError as exc:
        raise _fail(exc) from exc
    text = json.dumps(result, indent=2)
    if summary is not None:
        from tripwire._io import write_text

        write_text(summary, text + "\n")
    typer.echo(text)


def main() -> None:
    try:
        app()
    except UsageError as exc:  # pragma: no cover - typer handles most
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
