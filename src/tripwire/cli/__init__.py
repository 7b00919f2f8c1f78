"""The ``tripwire`` command line: one verb per job, one module per family of verbs.

======================  ==========================================================
``audit``, ``info``     :mod:`tripwire.cli.audit`
``capture``             :mod:`tripwire.cli.capture`
``concepts``, ``steer``  :mod:`tripwire.cli.concepts`
``probe``               :mod:`tripwire.cli.probe`
``drift``, ``screen``,  :mod:`tripwire.cli.checks`
``tamper``
``organism``            :mod:`tripwire.cli.organism`
``eval``                :mod:`tripwire.cli.eval`
``guard``               :mod:`tripwire.cli.guard`
``serve``, ``watch``,   :mod:`tripwire.cli.serve`
``keys``
======================  ==========================================================

Shared pieces: :mod:`~tripwire.cli._options` (the model/adapter/device/dtype/seed/json options,
declared once), :mod:`~tripwire.cli._output` (stdout for results, stderr for progress and
errors; one ``fail``), :mod:`~tripwire.cli._ray` (``--ray [ADDRESS]``: a Ray mapper for the
commands that iterate over models), :mod:`~tripwire.cli._app` (one error path; flags render
as flags; ``--json FILE`` still accepted where it once named the results file).

Exit codes: 0 success; 1 a run failed; 2 bad usage or input (one line on stderr says what is
wrong and how to fix it; nothing was written). Heavy libraries are imported inside the commands,
so ``tripwire --help`` and the runtime commands start without torch.
"""

from __future__ import annotations

import sys

from tripwire.cli import audit, capture, checks, concepts, eval, guard, organism, probe, serve
from tripwire.cli._app import App
from tripwire.cli._output import err

app = App(
    name="tripwire",
    help="Catch the misalignment a language model's outputs hide.",
    add_completion=True,
)
app.add_typer(audit.app)
app.add_typer(capture.app)
app.add_typer(concepts.app, name="concepts")
app.add_typer(concepts.steer_app)
app.add_typer(probe.app, name="probe")
app.add_typer(checks.app)
app.add_typer(organism.app, name="organism")
app.add_typer(eval.app, name="eval")
app.add_typer(guard.app, name="guard")
app.add_typer(serve.app)
app.add_typer(serve.keys_app, name="keys")


def main() -> None:
    """Entry point (``[project.scripts] tripwire``): run the app; exit codes as above."""
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


__all__ = ["app", "main"]
