"""``tripwire eval list | run | table | steer | audit | sweep | guarded | validate-judge``.

The scenarios are Inspect tasks (:mod:`tripwire.behavior`); these commands run them through
:mod:`tripwire.behavior.runner` and print the results with their confidence intervals.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from tripwire.cli._app import App, needs_extra
from tripwire.cli._inputs import check_in_file, check_out_dir
from tripwire.cli._options import Json
from tripwire.cli._output import print_json, wide
from tripwire.errors import DataError, UsageError

if TYPE_CHECKING:
    from tripwire.behavior.results import Row

app = App(help="Behaviour scenarios on Inspect AI (scheming, sandbagging, jailbreaks...).")

ModelArgs = Annotated[
    list[str] | None, typer.Option("--model-arg", "-M", help="key=value for the provider")
]


Limit = Annotated[
    int | None, typer.Option("--limit", min=1, help="samples per condition (smoke runs)")
]
Conditions = Annotated[
    list[str] | None,
    typer.Option("--condition", help="repeatable: keep these conditions (and the control)"),
]
BaseUrl = Annotated[
    str | None,
    typer.Option(
        "--model-base-url",
        help="base URL of an OpenAI-compatible server (e.g. a tripwire guard: "
        "--model openai-api/guard/NAME --model-base-url http://127.0.0.1:8500/v1)",
    ),
]


def _model_args(pairs: list[str] | None) -> dict[str, str]:
    args: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"model arg {pair!r} is not key=value")
        args[key] = value
    return args


def _check_provider(model: str | None, flag: str = "--model") -> None:
    """An Inspect ``provider/model`` name whose provider is registered, checked before a run
    starts (Inspect has no public lookup; this is the one ``get_model`` uses)."""
    from inspect_ai._util.registry import registry_find, registry_unqualified_name

    api, sep, _ = (model or "").partition("/")
    if not (api and sep):
        return  # Inspect's own message covers a name without a provider
    found = registry_find(lambda i: i.type == "modelapi" and registry_unqualified_name(i) == api)
    if not found:
        raise UsageError(
            f"{flag} {model!r}: no Inspect model provider {api!r} (e.g. tripwire/scripted-scheme, "
            "openai/<model>, hf/<model>)"
        )


def _print(rows: list[Row], title: str) -> None:
    labelled = any(r.label for r in rows)
    cols = ["task", "condition", "measure", "n", "rate %", "95% CI", "diff pp", "95% CI "]
    t = Table(title=escape(title))
    for col in ["run", *cols] if labelled else cols:
        t.add_column(col, overflow="fold")
    for r in rows:
        diff = "" if r.diff is None else f"{100 * r.diff:+.1f}"
        dci = (
            ""
            if r.diff is None
            else f"[{100 * (r.diff_low or 0):.1f}, {100 * (r.diff_high or 0):.1f}]"
        )
        cells = [
            r.task,
            r.condition + (" (control)" if r.control else ""),
            r.measure,
            str(r.n),
            f"{100 * r.rate:.1f}",
            f"[{100 * r.ci_low:.1f}, {100 * r.ci_high:.1f}]",
            diff,
            dci,
        ]
        t.add_row(*(escape(c) for c in ([r.label, *cells] if labelled else cells)))
    wide.print(t)


@app.command("list")
def list_cmd(as_json: Json = False) -> None:
    """List the registered scenario tasks (--json: [{"name", "description", ...}, ...])."""
    with needs_extra("behavior", "eval list"):
        from tripwire.behavior import FAMILIES
        from tripwire.behavior.runner import task_names

    rows: list[dict[str, Any]] = []
    for name in task_names():
        fam = FAMILIES[name.split("/", 1)[1]]
        rows.append(
            {
                "name": name,
                "description": fam.summary,
                "conditions": fam.conditions(),
                "outcome": fam.metric_name,
            }
        )
    if as_json:
        print_json(rows)
        return
    t = Table(title="tripwire behaviour scenarios")
    for col in ("task", "conditions (first = control)", "outcome 1 =", "what it detects"):
        t.add_column(col)
    for r in rows:
        t.add_row(r["name"], ", ".join(r["conditions"]), r["outcome"], r["description"])
    wide.print(t)


@app.command("run")
def run_cmd(
    scenarios: Annotated[list[str], typer.Argument(help="scenario names, or 'all'")],
    model: Annotated[str, typer.Option("--model", "-m", help="any Inspect model")] = (
        "tripwire/scripted-scheme"
    ),
    model_arg: ModelArgs = None,
    model_base_url: BaseUrl = None,
    limit: Limit = None,
    condition: Annotated[str | None, typer.Option(help="run only this condition")] = None,
    log_dir: Annotated[Path, typer.Option(help="where .eval logs and results go")] = Path(
        "logs/behavior"
    ),
    interrogation: Annotated[bool, typer.Option(help="ask the follow-up question")] = True,
    epochs: Annotated[int, typer.Option(min=1, help="repeats of every sample")] = 1,
    variants: Annotated[
        int,
        typer.Option(
            min=1, help="surface-varied copies of every sample (paired across conditions)"
        ),
    ] = 1,
    temperature: Annotated[
        float | None, typer.Option(min=0.0, help="sampling temperature (default 0, seed 0)")
    ] = None,
    grader: Annotated[
        str | None, typer.Option(help="model bound to the 'grader' role (LLM judge)")
    ] = None,
    as_json: Json = False,
) -> None:
    """Run scenarios; write .eval logs plus results.json/results.md with CIs."""
    with needs_extra("behavior", "eval run"):
        from tripwire.behavior.results import to_json
        from tripwire.behavior.runner import run_scenarios

    check_out_dir(log_dir, "--log-dir")
    _check_provider(model)
    _check_provider(grader, "--grader")
    _, rows = run_scenarios(
        scenarios,
        model,
        _model_args(model_arg),
        per_condition=limit,
        log_dir=log_dir,
        interrogation=interrogation,
        condition=condition,
        epochs=epochs,
        model_roles={"grader": grader} if grader else None,
        temperature=temperature,
        variants=variants,
        model_base_url=model_base_url,
    )
    if as_json:
        print_json(to_json(rows))
    else:
        _print(rows, f"{model}: {', '.join(scenarios)}")
        wide.print(f"logs and results in {log_dir}")


def _check_log(log: Path) -> None:
    """An Inspect log that can be read (its header), or one line saying why not."""
    from inspect_ai.log import read_eval_log

    check_in_file(log, "log")
    if log.suffix not in (".eval", ".json"):
        raise UsageError(f"{log} is not an Inspect log: give .eval (or .json) log files")
    try:
        read_eval_log(str(log), header_only=True)
    except Exception as exc:  # a zip, JSON or schema error: the file is not a readable log
        first = (str(exc).splitlines() or [""])[0][:200]
        raise DataError(f"cannot read Inspect log {log}: {type(exc).__name__}: {first}") from None


@app.command("table")
def table_cmd(
    logs: Annotated[list[Path], typer.Argument(help=".eval log files")],
    out: Annotated[Path | None, typer.Option(help="also write results.json/.md here")] = None,
    as_json: Json = False,
) -> None:
    """Results table (rates, Wilson CIs, difference vs control with CI) from .eval logs."""
    with needs_extra("behavior", "eval table"):
        from tripwire.behavior.results import table, to_json, write

    for log in logs:
        _check_log(log)
    check_out_dir(out)
    rows = table(logs)
    if out is not None:
        write(rows, out)
    if as_json:
        print_json(to_json(rows))
    else:
        _print(rows, "results")


@app.command("steer")
def steer_cmd(
    scenario: Annotated[str, typer.Argument(help="one scenario")],
    concept: Annotated[str, typer.Option(help="shipped concept, e.g. desperation or calm")],
    strengths: Annotated[str, typer.Option(help="comma-separated; 0 = off")] = "-8,0,8",
    layer: Annotated[
        int | None, typer.Option(min=0, help="block (default: the concept's best)")
    ] = None,
    model: Annotated[str, typer.Option("--model", "-m")] = "tripwire/smollm2-135m",
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="samples per condition")
    ] = None,
    log_dir: Annotated[Path, typer.Option()] = Path("logs/behavior-steering"),
    max_new_tokens: Annotated[int, typer.Option(min=1)] = 96,
) -> None:
    """Outcome rates with a concept amplified, off and suppressed (a table with CIs)."""
    with needs_extra("behavior", "eval steer"):
        from tripwire.behavior.runner import steering_comparison

    try:
        values = [float(s) for s in strengths.split(",") if s.strip()]
    except ValueError:
        raise typer.BadParameter(f"strengths must be numbers, got {strengths!r}") from None
    check_out_dir(log_dir, "--log-dir")
    _check_provider(model)
    rows = steering_comparison(
        scenario,
        model,
        concept,
        values,
        layer,
        limit,
        log_dir,
        {"max_new_tokens": max_new_tokens},
    )
    _print(rows, f"{scenario} under {concept} steering (diff = vs unsteered, same condition)")
    wide.print(f"logs and steering.json/.md in {log_dir}")


@app.command("audit")
def audit_cmd(
    model: Annotated[str, typer.Option("--model", "-m")] = "tripwire/smollm2-135m",
    scenarios: Annotated[
        str, typer.Option(help="comma-separated subset")
    ] = "oversight_subversion,reward_hacking,sandbagging,jailbreak",
    limit: Annotated[int, typer.Option("--limit", min=1, help="samples per condition")] = 2,
    out: Annotated[Path, typer.Option(help="folder for logs, results and behavior.json")] = Path(
        "tripwire-report/behavior"
    ),
    model_arg: ModelArgs = None,
) -> None:
    """The behaviour section of ``tripwire audit``: a subset of scenarios with a small limit."""
    from tripwire._io import write_json

    with needs_extra("behavior", "eval audit"):
        from tripwire.behavior.runner import behavior_audit

    check_out_dir(out)
    _check_provider(model)
    section = behavior_audit(
        model,
        [s.strip() for s in scenarios.split(",") if s.strip()],
        per_condition=limit,
        log_dir=out,
        model_args=_model_args(model_arg),
    )
    write_json(out / "behavior.json", section)
    for f in section["findings"]:
        d = f["max_diff_vs_control"]
        gap = "" if d is None else f"; largest gap vs control {100 * d:+.1f} pp in {f['condition']}"
        wide.print(escape(f"{f['scenario']}: rates {f['rate']}{gap}"))
    wide.print(escape(f"behaviour section written to {out / 'behavior.json'}"))


@app.command("sweep")
def sweep_cmd(
    scenarios: Annotated[list[str], typer.Argument(help="scenario names, or 'all'")],
    models: Annotated[
        list[str], typer.Option("--model", "-m", help="repeatable: every Inspect model to run")
    ],
    condition: Conditions = None,
    model_arg: ModelArgs = None,
    model_base_url: BaseUrl = None,
    limit: Limit = None,
    log_dir: Annotated[
        Path, typer.Option(help="the eval set's logs; the same folder again resumes the sweep")
    ] = Path("logs/sweep"),
    out: Annotated[Path | None, typer.Option(help="also write results.json/.md here")] = None,
    retry_attempts: Annotated[
        int, typer.Option(min=0, help="retries of a (scenario, model) that failed")
    ] = 3,
    retry_wait: Annotated[
        float, typer.Option(min=0.0, help="seconds before the first retry (doubled each time)")
    ] = 30.0,
    interrogation: Annotated[bool, typer.Option(help="ask the follow-up question")] = True,
    epochs: Annotated[int, typer.Option(min=1, help="repeats of every sample")] = 1,
    as_json: Json = False,
) -> None:
    """Scenarios x models with Inspect's eval_set (retries, resumable logs); one table."""
    with needs_extra("behavior", "eval sweep"):
        from tripwire.behavior.results import to_json, write
        from tripwire.behavior.sweep import sweep

    check_out_dir(log_dir, "--log-dir")
    check_out_dir(out)
    if out is not None and out.resolve() == log_dir.resolve():
        raise UsageError("--out must differ from --log-dir (the eval set owns its log folder)")
    for m in models:
        _check_provider(m)
    result = sweep(
        scenarios,
        models,
        log_dir,
        conditions=condition or (),
        per_condition=limit,
        model_args=_model_args(model_arg),
        interrogation=interrogation,
        epochs=epochs,
        retry_attempts=retry_attempts,
        retry_wait=retry_wait,
        model_base_url=model_base_url,
    )
    if out is not None:
        write(result.rows, out)
    if as_json:
        print_json(to_json(result.rows))
        return
    _print(result.rows, f"sweep: {', '.join(scenarios)} x {len(models)} models")
    wide.print(f"{len(result.logs)} logs in {log_dir}" + (f"; results in {out}" if out else ""))


@app.command("guarded")
def guarded_cmd(
    scenarios: Annotated[list[str], typer.Argument(help="scenario names, or 'all'")],
    guard: Annotated[
        str, typer.Option("--guard", help="the tripwire guard's URL (http://HOST:PORT[/v1])")
    ],
    baseline: Annotated[
        str,
        typer.Option(
            "--baseline", help="the same model without the guard's detectors (its server's URL)"
        ),
    ],
    name: Annotated[
        str | None, typer.Option(help="model name sent to both (default: what each serves)")
    ] = None,
    condition: Conditions = None,
    limit: Limit = None,
    log_dir: Annotated[
        Path, typer.Option(help="the eval set's logs; the same folder again resumes it")
    ] = Path("logs/guarded"),
    out: Annotated[Path, typer.Option(help="where guarded.json/.md go")] = Path(
        "logs/guarded-report"
    ),
    retry_attempts: Annotated[
        int, typer.Option(min=0, help="retries of a (scenario, arm) that failed")
    ] = 1,
    interrogation: Annotated[bool, typer.Option(help="ask the follow-up question")] = True,
    epochs: Annotated[int, typer.Option(min=1, help="repeats of every sample")] = 1,
    as_json: Json = False,
) -> None:
    """Scenarios without and with a tripwire guard (Inspect's openai-api provider, one eval
    set): misaligned rates with CIs, the difference, the samples the guard blocked or cut."""
    with needs_extra("behavior", "eval guarded"):
        from tripwire.behavior.guarded import guarded
        from tripwire.behavior.results import to_json, write

    check_out_dir(log_dir, "--log-dir")
    check_out_dir(out)
    if out.resolve() == log_dir.resolve():
        raise UsageError("--out must differ from --log-dir (the eval set owns its log folder)")
    result = guarded(
        scenarios,
        guard,
        baseline,
        log_dir,
        name=name,
        conditions=condition or (),
        per_condition=limit,
        interrogation=interrogation,
        epochs=epochs,
        retry_attempts=retry_attempts,
    )
    write(result.rows, out, stem="guarded", versus="without guard")
    if as_json:
        print_json(to_json(result.rows))
        return
    _print(result.rows, f"{', '.join(scenarios)}: diff = with minus without the guard")
    wide.print(f"{len(result.logs)} logs in {log_dir}; guarded.json/.md in {out}")


@app.command("validate-judge")
def validate_judge_cmd(
    grader: Annotated[str, typer.Option(help="the model to validate as the grader")],
    model_arg: ModelArgs = None,
    as_json: Json = False,
) -> None:
    """Agreement (accuracy, Cohen's kappa) of a grader with the shipped labelled examples."""
    import asyncio
    from dataclasses import asdict

    with needs_extra("behavior", "eval validate-judge"):
        from inspect_ai.model import get_model

        from tripwire.behavior.judge import validate

    args: dict[str, Any] = dict(_model_args(model_arg))
    _check_provider(grader, "--grader")
    model = get_model(grader, **args)
    results = asyncio.run(validate(model))
    if as_json:
        print_json([asdict(r) for r in results])
        return
    t = Table(title=f"grader {grader} on the shipped labelled examples")
    for col in ("question", "n", "accuracy", "kappa", "unanswered"):
        t.add_column(col)
    for r in results:
        t.add_row(r.question, str(r.n), f"{r.accuracy:.2f}", f"{r.kappa:.2f}", str(r.unanswered))
    wide.print(t)


__all__ = ["app"]
