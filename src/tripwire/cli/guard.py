"""``tripwire guard``: serve a local model behind detectors reading its own forward pass, and
``tripwire guard calibrate``: set the detectors' thresholds from honest traffic.

Serving needs the ``guard`` extra (FastAPI, uvicorn). A detector without a calibration sidecar
stops the server before the model loads (exit 2) unless ``--allow-uncalibrated`` is given, in
which case its scores are reported and it gates nothing.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from tripwire.cli._app import App, needs_extra
from tripwire.cli._options import DEFAULT_MODEL, Adapter, Device, Dtype, Json, Model, Seed
from tripwire.cli._output import err, out, print_json, progress
from tripwire.errors import UsageError

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
        help="a saved detector or concept vector (PATH or PATH:LAYER[,LAYER]); repeatable",
    ),
]


def _uncalibrated_error(name: str, path: Path | None) -> UsageError:
    return UsageError(
        f"detector {name} is not calibrated (no {path.name if path else name}.guard.json): run "
        f"`tripwire guard calibrate --detector {path or name} --traffic HONEST.jsonl`, or pass "
        "--allow-uncalibrated to report its scores without gating"
    )


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
    log_level: Annotated[str, typer.Option()] = "warning",
) -> None:
    """Serve MODEL on an OpenAI-compatible API with the detectors gating it (Ctrl-C stops)."""
    if ctx.invoked_subcommand is not None:
        return
    with needs_extra("guard", "guard"):
        import uvicorn

        from tripwire.guard.server import create_app
    from tripwire.guard import Guard, load_detector

    dets = [load_detector(d) for d in detector or []]
    missing = [d for d in dets if not d.calibrated]
    if missing and not allow_uncalibrated:
        raise _uncalibrated_error(missing[0].name, missing[0].path)
    from tripwire.models import load_model

    lm = load_model(model, adapter, dtype, device)
    served = Guard(lm, dets, name=name or model, default_max_tokens=max_tokens)
    gates = ", ".join(f"{d.name} (layers {d.layers})" for d in dets) or "none"
    err.print(
        f"guarding {served.name} on http://{host}:{port}/v1 (detectors: {gates})",
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
    detector: Annotated[str, typer.Option("--detector", "-d", help="PATH or PATH:LAYER")],
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
    det = load_detector(detector, layer)
    if layer:
        det.layers = sorted(set(layer))
    prompts = read_traffic(traffic)
    with progress(not as_json) as say:
        lm = say.load(model, adapter, dtype, device)
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
        )
    path = write_sidecar(result.detector, lm.name, {"traffic": str(traffic)})
    summary = {**result.summary(), "sidecar": str(path), "model": lm.name}
    if as_json:
        print_json(summary)
        return
    p, d = summary["prefill"], summary["decode"]
    flag = "none" if p["flag"] is None else f"{p['flag']:.3f}"
    out.print(
        f"{summary['detector']} on {summary['n_prompts']} honest prompts: block > "
        f"{p['block']:.3f}, flag > {flag} (budget {p['budget']:.2%}, honest blocked here "
        f"{p['false_block_rate']:.2%}); decode {d['rule']} level {d['level']:.3f} (honest "
        f"answers cut here {d['false_stop_rate']:.2%}); wrote {path}",
        highlight=False,
        soft_wrap=True,
    )


__all__ = ["app", "calibrate_cmd", "guard"]
