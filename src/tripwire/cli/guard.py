"""``tripwire guard``: serve a local model behind detectors reading its own forward pass, and
``tripwire guard calibrate``: set the detectors' thresholds from honest traffic.

Serving needs the ``guard`` extra (FastAPI, uvicorn). A detector without a calibration sidecar
stops the server before the model loads (exit 2) unless ``--allow-uncalibrated`` is given, in
which case its scores are reported and it gates nothing. ``--policy FILE``
(:mod:`tripwire.guard.policy`) is checked before the model loads too.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from tripwire.cli._app import App, needs_extra
from tripwire.cli._options import DEFAULT_MODEL, Adapter, Device, Dtype, Json, Model, Seed
from tripwire.cli._output import err, out, print_json, progress
from tripwire.errors import UsageError

if TYPE_CHECKING:
    from tripwire.guard.telemetry import Telemetry

ENDPOINT_ENV = "OTEL_EXPORTER_OTLP_ENDPOINT"

app = App(
    help="Serve a local model with detectors inside its forward pass (OpenAI-compatible).",
    no_args_is_help=False,
    invoke_without_command=True,
)

Detectors = Annotated[
    list[str] | None,
    typer.Option(
        "--detector",
        "-d",
        help="a saved detector or concept vector (PATH or PATH:LAYER[,LAYER]), or diff-kl (the "
        "fine-tune's first-token KL from its base; needs --adapter), or diff-kl-gen (the same "
        "over the first 8 answer tokens, held back until it decides); repeatable",
    ),
]


def _uncalibrated_error(name: str, path: Path | None, adapter: Path | None = None) -> UsageError:
    from tripwire.guard.detectors import BUILTINS

    spec = name if name in BUILTINS else (path or name)
    extra = f" --adapter {adapter}" if name in BUILTINS else ""
    return UsageError(
        f"detector {name} is not calibrated (no {path.name if path else name}.guard.json): run "
        f"`tripwire guard calibrate --detector {spec}{extra} --traffic HONEST.jsonl`, or pass "
        "--allow-uncalibrated to report its scores without gating"
    )


def _telemetry_target(
    watch: str | None, key: str | None, otlp_endpoint: str | None
) -> tuple[str, str | None] | None:
    """Where spans go (the ``/v1/traces`` URL and the key), checked before anything loads:
    ``--watch`` (a ``tripwire serve``, with ``--key``), ``--otlp-endpoint`` or the standard
    ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``/``OTEL_EXPORTER_OTLP_ENDPOINT`` (any collector)."""
    if key is not None and watch is None:
        raise UsageError("--key is the API key of the --watch service: give --watch URL too")
    if watch is not None and otlp_endpoint is not None:
        raise UsageError("give --watch URL (tripwire serve) or --otlp-endpoint URL, not both")
    if watch is not None and not key:
        raise UsageError(
            f"--watch {watch} needs --key KEY (an API key of that service: "
            "`tripwire keys create --tenant NAME`)"
        )
    given = [
        ("--watch", watch),
        ("--otlp-endpoint", otlp_endpoint),
        *((v, os.environ.get(v)) for v in ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", ENDPOINT_ENV)),
    ]
    flag, url = next(((f, u) for f, u in given if u), (None, None))
    if flag is None or url is None:
        return None
    with needs_extra("guard", f"guard {flag}"):
        from tripwire.guard.telemetry import traces_url
    return traces_url(url, flag, as_given=flag == "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"), key


def _telemetry(target: tuple[str, str | None] | None) -> Telemetry | None:
    if target is None:
        return None
    from tripwire.guard.telemetry import Telemetry

    return Telemetry.otlp(target[0], target[1])


@app.callback()
def guard(
    ctx: typer.Context,
    model: Model = DEFAULT_MODEL,
    adapter: Adapter = None,
    detector: Detectors = None,
    allow_uncalibrated: Annotated[
        bool,
        typer.Option(
            "--allow-uncalibrated", help="serve detectors without a sidecar (scores only)"
        ),
    ] = False,
    name: Annotated[
        str | None, typer.Option("--name", help="the model name clients send (default: --model)")
    ] = None,
    host: Annotated[str, typer.Option(help="interface to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535)] = 8500,
    device: Device = "cpu",
    dtype: Dtype = "float32",
    batch_window_ms: Annotated[
        float, typer.Option(min=0.0, help="how long to collect requests into one batch")
    ] = 5.0,
    max_batch: Annotated[int, typer.Option(min=1, help="requests per batch at most")] = 8,
    max_tokens: Annotated[
        int, typer.Option(min=1, help="max_tokens when a request gives none")
    ] = 256,
    max_body_bytes: Annotated[int, typer.Option(min=1024, help="request body limit")] = 4_000_000,
    policy: Annotated[
        Path | None,
        typer.Option(
            "--policy",
            help="a JSON policy: mode (enforce, or shadow: report, block nothing), per-detector "
            "actions (block/flag/allow, per stage), the blocked-answer notice, on_error "
            "(fail-closed/fail-open); checked before the model loads (see docs/guard.md)",
        ),
    ] = None,
    log_level: Annotated[str, typer.Option()] = "warning",
    watch: Annotated[
        str | None,
        typer.Option(
            "--watch",
            metavar="URL",
            help="send every request's span to this `tripwire serve` (its /v1/traces); needs --key",
        ),
    ] = None,
    key: Annotated[
        str | None, typer.Option("--key", metavar="KEY", help="the --watch service's API key")
    ] = None,
    otlp_endpoint: Annotated[
        str | None,
        typer.Option(
            "--otlp-endpoint",
            metavar="URL",
            help="send spans to any OTLP/HTTP collector (BASE or BASE/v1/traces; default: "
            "OTEL_EXPORTER_OTLP_ENDPOINT when set)",
        ),
    ] = None,
) -> None:
    """Serve MODEL on an OpenAI-compatible API with the detectors gating it (Ctrl-C stops)."""
    if ctx.invoked_subcommand is not None:
        return
    target = _telemetry_target(watch, key, otlp_endpoint)
    with needs_extra("guard", "guard"):
        import uvicorn

        from tripwire.guard.server import create_app
    from tripwire.guard import Guard
    from tripwire.guard.api import load_detectors
    from tripwire.guard.policy import Policy, load_policy

    rules = load_policy(policy) if policy is not None else Policy()
    dets = load_detectors(detector or [], adapter)
    missing = [d for d in dets if not d.calibrated]
    if missing and not allow_uncalibrated:
        raise _uncalibrated_error(missing[0].name, missing[0].path, adapter)
    rules.check_detectors([d.name for d in dets])
    from tripwire.models import load_model

    lm = load_model(model, adapter, dtype, device)
    base = load_model(model, None, dtype, device) if any(d.needs_base for d in dets) else None
    telemetry = _telemetry(target)
    served = Guard(
        lm,
        dets,
        name=name or model,
        default_max_tokens=max_tokens,
        base=base,
        telemetry=telemetry,
        policy=rules,
    )
    gates = ", ".join(f"{d.name} (layers {d.layers})" for d in dets) or "none"
    spans = f"; spans to {target[0]}" if target is not None else ""
    mode = "" if rules.enforce else "; shadow mode: nothing is blocked"
    err.print(
        f"guarding {served.name} on http://{host}:{port}/v1 (detectors: {gates}{mode}){spans}",
        highlight=False,
        soft_wrap=True,
    )
    sys.stderr.flush()
    uvicorn.run(
        create_app(served, batch_window_ms, max_batch, max_body_bytes),
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
    )


@app.command("calibrate")
def calibrate_cmd(
    traffic: Annotated[
        Path, typer.Option("--traffic", help='honest traffic: JSONL {"messages": [...]}')
    ],
    detector: Annotated[
        str,
        typer.Option(
            "--detector", "-d", help="PATH, PATH:LAYER, or diff-kl / diff-kl-gen with --adapter"
        ),
    ],
    model: Model = DEFAULT_MODEL,
    adapter: Adapter = None,
    layer: Annotated[
        list[int] | None, typer.Option("--layer", help="the layer(s) the detector reads")
    ] = None,
    budget: Annotated[
        float, typer.Option(min=0.0001, max=0.5, help="false blocks allowed on honest traffic")
    ] = 0.01,
    flag_budget: Annotated[
        float, typer.Option(min=0.0001, max=0.9, help="honest prompts flagged at most")
    ] = 0.05,
    max_tokens: Annotated[int, typer.Option(min=1, help="tokens generated per honest answer")] = 32,
    rule: Annotated[str, typer.Option(help="decode rule: cusum or ema")] = "cusum",
    temperature: Annotated[
        float,
        typer.Option(min=0.0, max=2.0, help="sample honest answers as served (0 = greedy)"),
    ] = 0.0,
    seed: Seed = 0,
    device: Device = "cpu",
    dtype: Dtype = "float32",
    as_json: Json = False,
) -> None:
    """Set a detector's thresholds from honest traffic; write DETECTOR.guard.json beside it."""
    from tripwire.guard.calibrate import calibrate, read_traffic
    from tripwire.guard.detectors import load_detector, write_sidecar
    from tripwire.guard.rules import RULES

    if rule not in RULES:
        raise UsageError(f"unknown --rule {rule!r}: use {' or '.join(RULES)}")
    from tripwire.guard.api import load_detectors
    from tripwire.guard.detectors import BUILTINS

    det = load_detectors([detector], adapter)[0] if detector in BUILTINS else None
    if det is None:
        det = load_detector(detector, layer)
        if layer:
            det.layers = sorted(set(layer))
    prompts = read_traffic(traffic)
    with progress(not as_json) as say:
        lm = say.load(model, adapter, dtype, device)
        base = say.load(model, None, dtype, device) if det.needs_base else None
        say("answering honest traffic")
        result = calibrate(
            lm,
            det,
            prompts,
            budget=budget,
            flag_budget=flag_budget,
            max_tokens=max_tokens,
            rule=rule,
            temperature=temperature,
            seed=seed,
            progress=lambda n: say.step(n, len(prompts)),
            base=base,
        )
    path = write_sidecar(result.detector, lm.name, {"traffic": str(traffic)})
    summary = {**result.summary(), "sidecar": str(path), "model": lm.name}
    if as_json:
        print_json(summary)
        return
    p, d = summary["prefill"], summary["decode"]
    flag = "none" if p["flag"] is None else f"{p['flag']:.3f}"
    dec = "no decode rule (it reads the prompt only)"
    if d is not None:
        dec = (f"decode {d['rule']} level {d['level']:.3f} (honest answers cut here "
               f"{d['false_stop_rate']:.2%})")  # fmt: skip
    out.print(
        f"{summary['detector']} on {summary['n_prompts']} honest prompts: block > "
        f"{p['block']:.3f}, flag > {flag} (budget {p['budget']:.2%}, honest blocked here "
        f"{p['false_block_rate']:.2%}); {dec}; wrote {path}",
        highlight=False,
        soft_wrap=True,
    )


@app.command("zoo")
def zoo_cmd(
    zoo: Annotated[Path, typer.Option("--zoo", help="a folder built by `tripwire organism zoo`")],
    out_file: Annotated[Path, typer.Option("--out", help="the results JSON to write")] = Path(
        "guard-zoo.json"
    ),
    markdown: Annotated[
        Path | None, typer.Option("--markdown", help="also write the table as Markdown")
    ] = None,
    role: Annotated[
        list[str] | None,
        typer.Option("--role", help="organisms of this role (final, dev); repeatable"),
    ] = None,
    budget: Annotated[
        float, typer.Option(min=0.0001, max=0.5, help="false blocks allowed on neutral traffic")
    ] = 0.01,
    detector: Annotated[
        str,
        typer.Option(
            "--detector",
            "-d",
            help="diff-kl (at the last prompt token) or diff-kl-gen (the "
            "first 8 answer tokens, held back)",
        ),
    ] = "diff-kl",
    seed: Seed = 0,
    device: Device = "cpu",
    as_json: Json = False,
) -> None:
    """The guard (a built-in diffing detector, calibrated on neutral traffic) in front of each
    zoo organism: defections blocked before anything is sent, false blocks, with intervals."""
    from tripwire._io import write_json, write_text
    from tripwire.cli._inputs import check_out_file
    from tripwire.guard.zoo import guard_zoo, render_markdown

    roles = role or ["final"]
    bad = [r for r in roles if r not in ("final", "dev")]
    if bad:
        raise UsageError(f"unknown --role {bad[0]!r}: use final or dev")
    if not zoo.is_dir():
        raise UsageError(f"--zoo {zoo} is not a folder: build one with `tripwire organism zoo`")
    from tripwire.guard.detectors import BUILTINS

    if detector not in BUILTINS:
        raise UsageError(f"unknown --detector {detector!r}: use {' or '.join(BUILTINS)}")
    check_out_file(out_file)
    check_out_file(markdown)
    with progress(not as_json) as say:
        result = guard_zoo(zoo, roles, budget=budget, seed=seed, device=device, progress=say,
                           detector=detector)  # fmt: skip
    write_json(out_file, result)
    table = render_markdown(result)
    if markdown is not None:
        write_text(markdown, table)
    if as_json:
        print_json(result)
        return
    out.print(table, highlight=False, soft_wrap=True)
    out.print(f"wrote {out_file}" + (f" and {markdown}" if markdown else ""))


__all__ = ["app", "calibrate_cmd", "guard", "zoo_cmd"]
