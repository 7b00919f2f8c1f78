"""``--ray [ADDRESS]`` for the commands that iterate over models: checked before any work, then
a Ray mapper (one task per model) for the command's loop, or ``None`` for the serial run."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tripwire.cli._app import needs_extra
from tripwire.cli._output import Status


def check_ray(address: str | None, command: str) -> None:
    """The scale extra is installed and ``--ray ADDRESS`` answers (one line, exit 2, if not)."""
    if address is None:
        return
    with needs_extra("scale", command):
        import ray  # noqa: F401

        from tripwire.scale.ray_runner import check_address
    check_address(address)


@contextmanager
def ray_mapper(
    address: str | None,
    say: Status,
    device: str = "cpu",
    cpus: float | None = None,
    gpus: float | None = None,
    retries: int = 3,
) -> Iterator[Any]:
    """A :class:`~tripwire.scale.RayMap` connected for the block (``None`` without ``--ray``);
    its progress drives the command's bar: one step per finished task, cluster-wide."""
    if address is None:
        yield None
        return
    from tripwire.scale.ray_runner import RayMap, Resources, cluster

    resources = Resources.for_device(device, cpus, gpus, retries)

    def progress(done: int, total: int, message: str) -> None:
        say(f"ray: {message}")
        say.step(done, total)

    say(f"connecting to Ray ({address})")
    with cluster(address):
        yield RayMap(resources, progress)


__all__ = ["check_ray", "ray_mapper"]
