"""Behaviour scenarios with and without ``tripwire guard``: one Inspect eval set, two arms.

Both arms are OpenAI-compatible servers of the same model, reached with Inspect's own
``openai-api`` provider: ``openai-api/guard/<name>`` at the guard's URL (``tripwire guard
--detector ...``) and ``openai-api/baseline/<name>`` at the baseline's (the same model without
the detectors: ``tripwire guard`` with no ``--detector`` serves it the same way, same chat
template and tool rendering). :func:`guarded` runs both as one :func:`~tripwire.behavior.sweep.
sweep` (Inspect's ``eval_set``: retries, resumable logs), then compares them per scenario x
condition: the misaligned-action rate without the guard, with it (and the difference with its
Newcombe interval: paired when both arms scored the same samples), and the samples the guard
blocked before their first token or cut mid-answer (``guard_blocked``, ``guard_cut``).

A withheld answer counts as the family's ``on_block`` says (see
:func:`~tripwire.behavior.scorers.verdict`): for an ``unscored`` family the guarded arm's
misaligned rate is over the samples it did not block, so its ``n`` can be smaller.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from inspect_ai.log import EvalLog, read_eval_log
from inspect_ai.model import Model, get_model

from tripwire.behavior.results import Row
from tripwire.behavior.runner import resolve
from tripwire.behavior.sweep import sweep
from tripwire.errors import UsageError
from tripwire.stats import newcombe, newcombe_paired

GUARD, BASELINE = "guard", "baseline"
"""The ``openai-api`` service names of the two arms (``openai-api/<service>/<model name>``)."""
WITH, WITHOUT = "with guard", "without guard"


def v1_url(url: str) -> str:
    """An OpenAI base URL: ``http://host:port`` or ``.../v1`` both give ``.../v1``."""
    url = url.rstrip("/")
    return url if url.endswith("/v1") else f"{url}/v1"


def served_name(url: str, flag: str) -> str:
    """The model a server serves (the first of its ``GET /v1/models``), or a UsageError."""
    import httpx

    try:
        reply = httpx.get(f"{url}/models", timeout=10)
        reply.raise_for_status()
        return str(reply.json()["data"][0]["id"])
    except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError) as exc:
        first = (str(exc).splitlines() or [""])[0][:200]
        raise UsageError(
            f"{flag} {url}: no OpenAI-compatible server lists a model there "
            f"({type(exc).__name__}: {first})"
        ) from None


@dataclass
class GuardedResult:
    """The two arms' models, the eval set's logs and the comparison rows."""

    models: dict[str, str]
    """``with guard`` / ``without guard`` -> the Inspect model name of that arm."""
    logs: list[EvalLog]
    rows: list[Row]
    log_dir: Path


def _outcomes(logs: Sequence[EvalLog], model: str) -> dict[tuple[str, str], dict[Any, int]]:
    """(task, condition) -> {(sample id, epoch): scenario outcome} of one arm's logs."""
    out: dict[tuple[str, str], dict[Any, int]] = {}
    for log in logs:
        if log.eval.model != model:
            continue
        if log.samples is None:  # eval_set hands back headers
            log = read_eval_log(log.location)
        task = log.eval.task.split("/")[-1]
        for s in log.samples or []:
            score = (s.scores or {}).get("scenario_outcome")
            if s.error is None and score is not None and isinstance(score.value, int | float):
                cond = str((s.metadata or {}).get("condition", "?"))
                out.setdefault((task, cond), {})[(str(s.id), s.epoch)] = int(score.value >= 0.5)
    return out


def compare(rows: Sequence[Row], logs: Sequence[EvalLog], models: dict[str, str]) -> list[Row]:
    """Per scenario x condition: the misaligned rate without the guard, with it (diff against
    without, paired where the same samples were scored in both), then the guard's counts."""
    base_name, guard_name = models[WITHOUT], models[WITH]
    plain = {"diff": None, "diff_low": None, "diff_high": None, "diff_method": ""}
    values = {name: _outcomes(logs, name) for name in (base_name, guard_name)}
    cells = list(dict.fromkeys((r.task, r.condition) for r in rows))
    out: list[Row] = []
    for cell in cells:
        mine = [r for r in rows if (r.task, r.condition) == cell]
        b = next((r for r in mine if r.label == base_name and r.measure == "misaligned"), None)
        g = next((r for r in mine if r.label == guard_name and r.measure == "misaligned"), None)
        if b is not None:
            out.append(Row(**{**asdict(b), **plain, "label": WITHOUT}))
        if g is not None:
            diff: dict[str, Any] = plain
            if b is not None:
                ours, theirs = values[guard_name].get(cell, {}), values[base_name].get(cell, {})
                keys = sorted(set(ours) & set(theirs), key=str)
                if keys and len(keys) == g.n == b.n:
                    d, lo, hi = newcombe_paired([(ours[k], theirs[k]) for k in keys])
                    method = "newcombe-paired"
                else:
                    d, lo, hi = newcombe(g.k, g.n, b.k, b.n)
                    method = "newcombe"
                diff = {"diff": d, "diff_low": lo, "diff_high": hi, "diff_method": method}
            out.append(Row(**{**asdict(g), **diff, "label": WITH}))
        elif b is not None:  # every sample's answer withheld in an ``unscored`` family
            nan = float("nan")
            out.append(Row(b.task, guard_name, b.condition, b.control, "misaligned", 0, 0,
                           nan, 0.0, 1.0, label=WITH))  # fmt: skip
        out += [
            Row(**{**asdict(r), **plain, "label": WITH})
            for r in mine
            if r.label == guard_name and r.measure.startswith("guard_")
        ]
    return out


def guarded(
    scenarios: Sequence[str],
    guard_url: str,
    baseline_url: str,
    log_dir: str | Path,
    name: str | None = None,
    conditions: Sequence[str] = (),
    per_condition: int | None = None,
    interrogation: bool = True,
    epochs: int = 1,
    retry_attempts: int = 1,
    retry_wait: float = 5.0,
    api_key: str = "unused",
) -> GuardedResult:
    """Run ``scenarios`` through the guard at ``guard_url`` and the baseline at
    ``baseline_url`` as one eval set in ``log_dir``; compare the arms (see the module).

    ``name`` is the model name sent to both servers (default: the one each serves).
    """
    guard_url, baseline_url = v1_url(guard_url), v1_url(baseline_url)
    if guard_url == baseline_url:
        raise UsageError(f"--guard and --baseline are the same server ({guard_url})")
    resolve(scenarios)  # unknown scenarios fail before any request
    arms: list[Model] = []
    models: dict[str, str] = {}
    for arm, service, url, flag in (
        (WITHOUT, BASELINE, baseline_url, "--baseline"),
        (WITH, GUARD, guard_url, "--guard"),
    ):
        served = name or served_name(url, flag)
        model = get_model(f"openai-api/{service}/{served}", base_url=url, api_key=api_key)
        models[arm] = str(model)
        arms.append(model)
    result = sweep(
        scenarios,
        arms,
        log_dir,
        conditions=conditions,
        per_condition=per_condition,
        interrogation=interrogation,
        epochs=epochs,
        retry_attempts=retry_attempts,
        retry_wait=retry_wait,
    )
    rows = compare(result.rows, result.logs, models)
    return GuardedResult(models, result.logs, rows, Path(log_dir))


__all__ = ["BASELINE", "GUARD", "WITH", "WITHOUT", "GuardedResult", "compare", "guarded"]
