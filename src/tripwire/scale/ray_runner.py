"""Reach a Ray cluster and map one job per model over it.

``--ray`` on a command that iterates over models, adapters or checkpoints turns its loop into
one Ray task per item:

* :func:`cluster` - ``local`` starts a private cluster on loopback for the command's lifetime
  (no dashboard, no usage statistics); ``auto`` joins the cluster this machine is part of;
  ``HOST:PORT`` or ``ray://HOST:PORT`` connects to one (checked to answer first, so an
  unreachable address is one line and exit 2, not a long hang). A Ray already initialised in
  this process (a notebook, a test) is used as it is and left running.
* :class:`RayMap` - ``mapper(fn, jobs, labels)`` submits ``fn(job)`` per job with the
  :class:`Resources` request (CPUs, GPUs, retries), shows a bar that advances as tasks finish
  anywhere on the cluster, and returns the results **in the order of the jobs**, so a run on
  Ray writes the same JSON and report as the serial one. A worker that dies (killed, out of
  memory, node lost) is retried up to ``max_retries`` times; an exception raised by the job is
  not (it would fail again) and stops the run with that error. Jobs write their outputs
  atomically (a temporary path renamed on success), so a killed attempt leaves nothing that a
  reader could take for a result.

Jobs are plain module-level functions taking one picklable argument; they live in their own
rooms (:func:`tripwire.checks.checkpoint_drift.read_job`,
:func:`tripwire.organisms.zoo.build_job`) and take a mapper, so only this room imports Ray.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from tripwire.errors import TripwireError, UsageError

#: The ``--ray`` value (and what a bare ``--ray`` means): a private cluster on this machine.
LOCAL = "local"

J = TypeVar("J")
R = TypeVar("R")


@dataclass(frozen=True)
class Resources:
    """What one task asks the cluster for, and how often a dead worker's task is retried."""

    num_cpus: float = 1.0
    num_gpus: float = 0.0
    max_retries: int = 3

    def __post_init__(self) -> None:
        if self.num_cpus < 0 or self.num_gpus < 0:
            raise UsageError("a Ray task's CPU and GPU requests must be >= 0")
        if self.max_retries < 0:
            raise UsageError("--ray-retries must be >= 0")

    @classmethod
    def for_device(
        cls, device: str, cpus: float | None = None, gpus: float | None = None, retries: int = 3
    ) -> Resources:
        """One CPU per task; one GPU per task when the command runs on ``cuda`` (Ray then
        points each worker's ``cuda`` at its own GPU), unless given."""
        if gpus is None:
            gpus = 1.0 if device.startswith("cuda") else 0.0
        return cls(1.0 if cpus is None else cpus, gpus, retries)


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UsageError(
            "--ray needs the scale extra (ray is not installed): pip install 'tripwire[scale]'"
        ) from None
    return ray


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """``HOST:PORT`` (optionally ``ray://``) answers a TCP connection within ``timeout``."""
    rest = address.removeprefix("ray://")
    host, sep, port_s = rest.rpartition(":")
    if not sep or not host or not port_s.isdigit() or not 0 < int(port_s) < 65536:
        raise UsageError(
            f"--ray {address!r} is not an address: give HOST:PORT, ray://HOST:PORT, auto, or "
            f"nothing (a local cluster)"
        )
    try:
        with socket.create_connection((host.strip("[]"), int(port_s)), timeout=timeout):
            pass
    except OSError as exc:
        raise UsageError(
            f"--ray {address}: no Ray cluster answers there ({exc.strerror or exc}); start one "
            "with `ray start --head` or give --ray alone for a local cluster"
        ) from None


def _quiet(ray: Any) -> None:
    """No usage statistics; Ray's own chatter only from warnings up."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.WARNING)


def check_address(address: str) -> None:
    """The ``--ray`` value, checked before any work starts (one line, exit 2, if wrong)."""
    _import_ray()
    if address in (LOCAL, "auto"):
        return
    _check_reachable(address)


@contextlib.contextmanager
def cluster(address: str = LOCAL, num_cpus: int | None = None) -> Iterator[Any]:
    """Ray, connected for the block: ``local`` (a private cluster on loopback, shut down
    after), ``auto`` or an address (disconnected after). Yields the ``ray`` module."""
    ray = _import_ray()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if ray.is_initialized():  # the caller's Ray: use it, leave it running
        _quiet(ray)
        yield ray
        return
    check_address(address)
    kwargs: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,  # workers' prints would land in our --json stdout
        "logging_level": logging.WARNING,
        "configure_logging": True,
    }
    try:
        if address == LOCAL:
            ray.init(num_cpus=num_cpus, _node_ip_address="127.0.0.1", **kwargs)
        else:
            kwargs.pop("include_dashboard")
            ray.init(address=address, **kwargs)
    except Exception as exc:  # Ray raises bare Exceptions too (a node that timed out starting)
        first = (str(exc).splitlines() or [""])[0][:200]
        if address == LOCAL:
            raise TripwireError(f"--ray: the local Ray cluster did not start ({first})") from None
        raise UsageError(f"--ray {address}: cannot connect ({first})") from None
    _quiet(ray)
    try:
        yield ray
    finally:
        ray.shutdown()


def _cause(exc: BaseException) -> BaseException:
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, BaseException) else exc


class RayMap:
    """``mapper(fn, jobs, labels) -> [fn(job) for job in jobs]``, each call a Ray task.

    ``progress(done, total, message)`` is called as each task finishes (in whatever order the
    cluster finishes them); the results come back in the order of ``jobs``.
    """

    def __init__(
        self,
        resources: Resources | None = None,
        progress: Callable[[int, int, str], None] | None = None,
    ) -> None:
        self.resources = resources or Resources()
        self.progress = progress

    def __call__(
        self, fn: Callable[[J], R], jobs: Sequence[J], labels: Sequence[str] | None = None
    ) -> list[R]:
        ray = _import_ray()
        if not ray.is_initialized():
            raise TripwireError("RayMap needs a connected Ray: use it inside `with cluster(...)`")
        names = [str(x) for x in (labels or range(len(jobs)))]
        if len(names) != len(jobs):
            raise UsageError(f"{len(names)} labels for {len(jobs)} jobs")
        res = self.resources
        remote = ray.remote(
            num_cpus=res.num_cpus,
            num_gpus=res.num_gpus,
            max_retries=res.max_retries,
            retry_exceptions=False,
        )(fn)
        refs = [remote.remote(job) for job in jobs]
        where = {ref: i for i, ref in enumerate(refs)}
        results: dict[int, R] = {}
        pending = list(refs)
        say = self.progress or (lambda done, total, message: None)
        say(0, len(jobs), f"{len(jobs)} tasks submitted to Ray")
        try:
            while pending:
                ready, pending = ray.wait(pending, num_returns=1)
                i = where[ready[0]]
                results[i] = self._get(ray, ready[0], names[i])
                say(len(results), len(jobs), f"{names[i]} done")
        except BaseException:
            for ref in pending:
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)
            raise
        return [results[i] for i in range(len(jobs))]

    def _get(self, ray: Any, ref: Any, label: str) -> Any:
        from ray import exceptions as rex

        try:
            return ray.get(ref)
        except rex.RayTaskError as exc:
            cause = _cause(exc)
            if isinstance(cause, TripwireError):
                raise cause from None
            first = (str(cause).splitlines() or [""])[0][:300]
            raise TripwireError(f"{label}: {type(cause).__name__}: {first}") from None
        except (rex.WorkerCrashedError, rex.NodeDiedError, rex.ObjectLostError) as exc:
            raise TripwireError(
                f"{label}: its Ray worker died {self.resources.max_retries + 1} times "
                f"({type(exc).__name__}); nothing of it was written"
            ) from None


def serial_map(
    fn: Callable[[J], R], jobs: Sequence[J], labels: Sequence[str] | None = None
) -> list[R]:
    """The same contract in this process: the reference a Ray run must equal."""
    return [fn(job) for job in jobs]


__all__ = ["LOCAL", "RayMap", "Resources", "check_address", "cluster", "serial_map"]
