"""What a monitor is: a name, whether it is trusted, and ``check(event) -> MonitorResult``."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from tripwire.runtime.events import Event, MonitorResult


@runtime_checkable
class Monitor(Protocol):
    """A layer that scores one event for suspicion in [0, 1].

    ``threshold`` is the score at and above which the monitor counts as having caught an event;
    honeypots use it to count misses. ``stateful`` monitors (rules that remember what an agent
    wrote) are shown honeypots through :meth:`check_isolated`, which must not change their state.
    """

    name: str
    trusted: bool
    threshold: float

    def check(self, event: Event) -> MonitorResult: ...

    def check_isolated(self, event: Event) -> MonitorResult: ...


__all__ = ["Monitor"]
