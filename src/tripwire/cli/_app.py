"""The typer classes every tripwire command is built from, so each convention lives in one place.

* **One error path.** A :class:`~tripwire.errors.TripwireError` raised anywhere in a command
  prints one line on stderr (``error: ...``) and exits with the error's code: 2 for bad usage or
  input (nothing written), 1 for a run that failed. typer's own usage errors exit 2.
* **Flags render as flags.** typer's rich help prints ``<bool>`` after every flag (``--json
  <bool>``) although ``--json true`` is an error; here a flag shows no type.
* **Usage errors are one line too.** typer's own (a missing option, a value out of range, an
  unknown command or option) print ``error: <what> (see `<command> --help`)`` instead of the
  usage block and panel; a float option that is not finite (``nan``, ``inf``) is one of them.
* **A missing extra is a usage error.** A command whose optional dependencies are not installed
  (``runtime``, ``behavior``) exits 2 with the ``pip install`` line (:func:`needs_extra`).
* **``--json`` has one meaning**: print the machine-readable result on stdout. Files are
  written by ``--out``. The commands that once wrote their JSON with ``--json FILE``
  (:class:`JsonFileCommand`) still accept that spelling as ``--out FILE``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar, NoReturn

import typer
from typer._click import Context
from typer._click.exceptions import NoArgsIsHelpError
from typer._click.exceptions import UsageError as ClickUsageError
from typer.core import TyperCommand, TyperGroup

from tripwire.cli._output import fail
from tripwire.errors import TripwireError, UsageError


@contextmanager
def needs_extra(extra: str, command: str) -> Iterator[None]:
    """Imports inside this block that fail for a third-party module name the extra to install.

    A failing ``tripwire`` module is a bug and propagates."""
    try:
        yield
    except ImportError as exc:
        if exc.name is None or exc.name.split(".")[0] == "tripwire":
            raise
        raise UsageError(
            f"`tripwire {command}` needs the {extra} extra ({exc.name.split('.')[0]} is not "
            "installed): "
            f"pip install 'tripwire[{extra}]'"
        ) from None


def _flags_untyped(params: list[Any]) -> list[Any]:
    for p in params:
        if getattr(p, "is_flag", False) and getattr(p, "metavar", None) is None:
            p.metavar = ""  # rendered as-is; typer would print "<bool>"
    return params


def legacy_json_file(args: list[str]) -> list[str]:
    """``--json FILE`` / ``--json=FILE`` -> ``--out FILE``; a bare ``--json`` stays the flag.

    Only for commands without positional arguments, where a word after ``--json`` can only be
    the old file operand.
    """
    rewritten: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rewritten.extend(args[i:])
            break
        if arg.startswith("--json="):
            rewritten += ["--out", arg.split("=", 1)[1]]
        elif arg == "--json" and i + 1 < len(args) and not args[i + 1].startswith("-"):
            rewritten += ["--out", args[i + 1]]
            i += 1
        else:
            rewritten.append(arg)
        i += 1
    return rewritten


#: Options whose value may be left out, and what a bare one means (``--ray`` = ``--ray local``).
BARE_VALUES = {"--ray": "local"}


def bare_values(args: list[str], opts: set[str]) -> list[str]:
    """``--ray`` at the end or before another option -> ``--ray local`` (for the options in
    ``opts`` that this command has). Only for commands without positional arguments."""
    rewritten: list[str] = []
    for i, arg in enumerate(args):
        if arg == "--":
            rewritten.extend(args[i:])
            break
        rewritten.append(arg)
        if arg in opts and (i + 1 == len(args) or args[i + 1].startswith("-")):
            rewritten.append(BARE_VALUES[arg])
    return rewritten


def usage_fail(ctx: Context, exc: ClickUsageError) -> NoReturn:
    """typer's usage error as the one ``error:`` line (exit code 2)."""
    what = " ".join(exc.format_message().split()).rstrip(".")
    fail(UsageError(f"{what} (see `{(exc.ctx or ctx).command_path} --help`)"))


@contextmanager
def _one_line_usage(ctx: Context) -> Iterator[None]:
    try:
        yield
    except NoArgsIsHelpError:
        raise  # shows the help, as it should
    except ClickUsageError as exc:
        usage_fail(ctx, exc)


def _check_finite(ctx: Context) -> None:
    """Every float option holds a finite number (a range lets ``nan`` through)."""
    for param in ctx.command.params:
        value = ctx.params.get(param.name or "")
        if isinstance(value, float) and not math.isfinite(value):
            hint = f"'{(getattr(param, 'opts', None) or [param.name])[0]}'"
            raise typer.BadParameter(f"{value} is not a finite number", ctx=ctx, param_hint=hint)


class Command(TyperCommand):
    """A command with the conventions above."""

    legacy_json_file: ClassVar[bool] = False

    def get_params(self, ctx: Any) -> list[Any]:
        return _flags_untyped(super().get_params(ctx))

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        with _one_line_usage(ctx):
            if self.legacy_json_file:
                new = legacy_json_file(args)
                if new != args and new.count("--out") > 1:
                    ctx.fail("--json FILE is the old spelling of --out FILE; give only --out FILE")
                args = new
            opts = {o for p in self.params for o in getattr(p, "opts", []) if o in BARE_VALUES}
            if opts:
                args = bare_values(args, opts)
            rest = super().parse_args(ctx, args)
            _check_finite(ctx)
            return rest

    def invoke(self, ctx: Any) -> Any:
        try:
            with _one_line_usage(ctx):
                return super().invoke(ctx)
        except TripwireError as exc:
            fail(exc)


class JsonFileCommand(Command):
    """A command whose results file is ``--out FILE`` and once was ``--json FILE``."""

    legacy_json_file = True


class Group(TyperGroup):
    def get_params(self, ctx: Any) -> list[Any]:
        return _flags_untyped(super().get_params(ctx))

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        with _one_line_usage(ctx):
            return super().parse_args(ctx, args)

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        with _one_line_usage(ctx):
            return super().resolve_command(ctx, args)

    def invoke(self, ctx: Any) -> Any:
        # A group whose callback does the work (``tripwire guard``) fails the same one way.
        try:
            return super().invoke(ctx)
        except TripwireError as exc:
            fail(exc)


class App(typer.Typer):
    """``typer.Typer`` whose groups and commands are :class:`Group` and :class:`Command`."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("cls", Group)
        kwargs.setdefault("no_args_is_help", True)
        kwargs.setdefault("pretty_exceptions_enable", False)
        kwargs.setdefault("add_completion", False)
        super().__init__(**kwargs)

    def command(  # type: ignore[override]
        self, name: str | None = None, *, cls: type[TyperCommand] | None = None, **kwargs: Any
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        return super().command(name, cls=cls or Command, **kwargs)


__all__ = [
    "BARE_VALUES",
    "App",
    "Command",
    "bare_values",
    "Group",
    "JsonFileCommand",
    "legacy_json_file",
    "needs_extra",
]
