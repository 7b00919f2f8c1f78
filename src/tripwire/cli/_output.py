"""Where a command's output goes: results on stdout, progress and errors on stderr.

``--json`` output is the result alone on stdout (no progress bar, no table), so it pipes into
``jq``. The progress bar is cleared before an error is printed, so the error line stands alone
(:func:`discard`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from tripwire.errors import TripwireError

if TYPE_CHECKING:
    from tripwire.models import LocalModel

err = Console(stderr=True)
out = Console()
# Tables with many columns (behaviour results) fold at 80 columns when piped; give them room.
wide = Console(width=None if sys.stdout.isatty() else 160)


def fail(exc: TripwireError) -> NoReturn:
    """Print ``error: <one line>`` on stderr and exit with the error's code."""
    err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
    raise typer.Exit(exc.exit_code)


def print_json(obj: Any) -> None:
    """The machine-readable result on stdout (indented JSON, one document)."""
    sys.stdout.write(json.dumps(obj, indent=2) + "\n")
    sys.stdout.flush()


def write_result(data: dict[str, Any], out_file: Path | None, as_json: bool) -> None:
    """Write ``data`` to ``--out FILE`` and/or print it for ``--json``."""
    if out_file is not None:
        from tripwire._io import write_json

        write_json(out_file, data)
    if as_json:
        print_json(data)


def wrote(*paths: Path | None) -> str:
    """``"; wrote A and B"`` for the files that were written, ``""`` if none."""
    names = [str(p) for p in paths if p is not None]
    return f"; wrote {' and '.join(names)}" if names else ""


class Status:
    """A progress line: ``say(message)`` sets the text, :meth:`step` the bar, :meth:`load`
    loads a model while saying so. Without a display (``--json``) every call is silent."""

    def __init__(self, prog: Progress | None) -> None:
        self.prog = prog
        self.task = prog.add_task("starting", total=None) if prog is not None else None

    def __call__(self, message: str) -> None:
        if self.prog is not None and self.task is not None:
            self.prog.update(self.task, description=message)

    def step(self, done: int, total: int) -> None:
        if self.prog is not None and self.task is not None:
            self.prog.update(self.task, completed=done, total=total)

    def concept(self, name: str, done: int, total: int) -> None:
        self(f"concept {name}")
        self.step(done, total)

    def train_step(self, what: str) -> Any:
        """An ``on_step(done, total, loss)`` callback for the training loops."""

        def on_step(done: int, total: int, loss: float) -> None:
            self(f"{what}: loss {loss:.3f}")
            self.step(done, total)

        return on_step

    def load(
        self, model: str, adapter: Path | None = None, dtype: str = "float32", device: str = "cpu"
    ) -> LocalModel:
        """Load a model from local files (see :func:`tripwire.models.load_model`)."""
        from tripwire.models import load_model

        self(f"loading {model}" + (f" + {adapter}" if adapter else ""))
        return load_model(model, adapter=adapter, dtype=dtype, device=device)


@contextmanager
def progress(show: bool = True) -> Iterator[Status]:
    """A progress line on stderr while the block runs (none when ``show`` is false)."""
    if not show:
        yield Status(None)
        return
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    prog = Progress(*columns, console=err, transient=False)
    prog.start()
    try:
        yield Status(prog)
    except BaseException:
        discard(prog)
        raise
    prog.stop()


def discard(prog: Progress) -> None:
    """Stop a progress line and leave nothing of it behind, so the error line that follows
    stands alone: the last frame drawn is empty and erased, and no blank line is added (as
    ``Progress.stop`` does where stderr is not a terminal)."""
    for task in list(prog.task_ids):
        prog.remove_task(task)
    prog.live.transient = True
    prog.live.stop()


__all__ = [
    "Status",
    "discard",
    "err",
    "fail",
    "out",
    "print_json",
    "progress",
    "wide",
    "write_result",
    "wrote",
]
