"""Behaviour sweeps: scenarios x models (x conditions) as one Inspect eval set.

:func:`sweep` hands the whole grid to Inspect's own ``eval_set``, which runs every (task,
model) pair, retries the ones that fail (``retry_attempts``, waiting ``retry_wait`` seconds,
doubled each time) reusing the samples they had finished, and keeps its logs in ``log_dir``:
running the same sweep again into the same ``log_dir`` picks up where it stopped and re-runs
nothing already complete. tripwire adds the results table: every (model, scenario, condition,
measure) with its Wilson interval and the difference against the paired control, one row per
model (the row's ``label`` is the model).

The conditions of a scenario are samples of one task, so the control is always run beside the
conditions it is compared with; ``conditions`` keeps only those (and the control).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inspect_ai import eval_set
from inspect_ai.log import EvalLog
from inspect_ai.model import Model

from tripwire.behavior.results import Row, table
from tripwire.behavior.runner import build_tasks, resolve
from tripwire.errors import TripwireError, UsageError


@dataclass
class SweepResult:
    """What a sweep ran: whether every (task, model) succeeded, the logs and the rows."""

    success: bool
    logs: list[EvalLog]
    rows: list[Row]
    log_dir: Path

    def failed(self) -> list[str]:
        return [
            f"{log.eval.task} on {log.eval.model}: {log.error.message if log.error else log.status}"
            for log in self.logs
            if log.status != "success"
        ]


def _with_controls(names: Sequence[str], conditions: Sequence[str]) -> list[str] | None:
    """The requested conditions plus each family's control, for the families that have them."""
    from tripwire.behavior import FAMILIES

    if not conditions:
        return None
    keep: set[str] = set()
    for name in resolve(names):
        known = FAMILIES[name].conditions()
        mine = [c for c in conditions if c in known]
        if mine:
            keep.update([known[0], *mine])  # the first condition is the family's control
    unknown = [c for c in conditions if c not in keep]
    if unknown:
        raise UsageError(f"condition(s) {unknown} belong to none of the scenarios {list(names)}")
    return sorted(keep)


def sweep(
    scenarios: Sequence[str],
    models: Sequence[str | Model],
    log_dir: str | Path,
    conditions: Sequence[str] = (),
    per_condition: int | None = None,
    model_args: dict[str, Any] | None = None,
    interrogation: bool = True,
    epochs: int = 1,
    retry_attempts: int = 3,
    retry_wait: float = 30.0,
    max_tasks: int | None = None,
    temperature: float | None = None,
    model_base_url: str | None = None,
) -> SweepResult:
    """Run ``scenarios`` on every model in ``models`` with Inspect's ``eval_set``.

    A model is an Inspect model name or a ``Model`` (e.g. one ``get_model`` pointed at its own
    ``base_url``); ``model_base_url`` is the base URL of every model given by name.

    Raises :class:`~tripwire.errors.TripwireError` when some (task, model) still failed after
    the retries (the logs stay in ``log_dir``: run the sweep again to resume it).
    """
    if not models:
        raise UsageError("a sweep needs at least one model")
    keys = [m if isinstance(m, str) else str(m) for m in models]
    if len(set(keys)) != len(keys):
        raise UsageError(f"models must be distinct, got {keys}")
    names = resolve(scenarios)
    if not names:
        raise UsageError("a sweep needs at least one scenario")
    keep = _with_controls(names, conditions)
    tasks = []
    for name in names:
        mine = None
        if keep is not None:
            from tripwire.behavior import FAMILIES

            mine = [c for c in FAMILIES[name].conditions() if c in keep]
            if len(mine) < 2:
                continue  # none of the requested conditions is this scenario's
        tasks += build_tasks([name], per_condition, interrogation, mine)
    success, logs = eval_set(
        tasks,
        log_dir=str(log_dir),
        model=list(models),  # type: ignore[arg-type]  # names and Models mixed is fine
        model_base_url=model_base_url,
        model_args=model_args or {},
        retry_attempts=retry_attempts,
        retry_wait=retry_wait,
        epochs=epochs,
        max_tasks=max_tasks,
        display="none",
        fail_on_error=False,
        temperature=temperature,
    )
    # Rows in the sweep's order (models as given, scenarios as given), however Inspect ran or
    # resumed them.
    order = {name: k for k, name in enumerate(names)}
    rows: list[Row] = []
    for model in keys:
        done = [lg for lg in logs if lg.eval.model == model and lg.status == "success"]
        done.sort(key=lambda lg: order.get(lg.eval.task.split("/")[-1], len(order)))
        rows += table(done, label=model)
    result = SweepResult(bool(success), list(logs), rows, Path(log_dir))
    if not result.success:
        raise TripwireError(
            "sweep incomplete after the retries (run it again to resume): "
            + " | ".join(m[:200] for m in result.failed())
        )
    return result


__all__ = ["SweepResult", "sweep"]
