"""Request batching for the server: concurrent requests share one prefill and one decode loop.

One asyncio worker owns the model. It waits for a request, then keeps collecting for up to
``window_ms`` milliseconds (or until ``max_batch`` requests are in), and runs them as one
left-padded batch in a worker thread, so the event loop keeps accepting connections and
streaming chunks. Requests arriving while a batch runs wait for the next one (static batching:
a batch is not joined mid-way; a vLLM backend would bring continuous batching). The engine's
events go back to each request's own queue through ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

from tripwire.guard.api import Guard, Prepared
from tripwire.guard.engine import Event


class EngineFailure(Exception):
    """The engine raised while running a batch; every request of that batch gets it."""


@dataclass
class Ticket:
    """A submitted request: its events arrive on ``events`` (``None`` after the last)."""

    prepared: Prepared
    events: asyncio.Queue[Event | EngineFailure | None] = field(default_factory=asyncio.Queue)


class Batcher:
    """Collects requests for ``window_ms`` (at most ``max_batch``) and runs them together."""

    def __init__(self, guard: Guard, window_ms: float = 5.0, max_batch: int = 8) -> None:
        self.guard, self.window, self.max_batch = guard, window_ms / 1000.0, max_batch
        self._queue: asyncio.Queue[Ticket] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.batches: list[int] = []  # sizes of the batches run so far (``/healthz`` shows them)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._work())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def submit(self, prepared: Prepared) -> Ticket:
        ticket = Ticket(prepared)
        self._queue.put_nowait(ticket)
        return ticket

    async def _collect(self) -> list[Ticket]:
        batch = [await self._queue.get()]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.window
        while len(batch) < self.max_batch:
            left = deadline - loop.time()
            if left <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), left))
            except TimeoutError:
                break
        return [t for t in batch if not t.prepared.request.cancelled.is_set()]

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            if not batch:
                continue
            self.batches.append(len(batch))

            def sink(i: int, event: Event, batch: list[Ticket] = batch) -> None:
                loop.call_soon_threadsafe(batch[i].events.put_nowait, event)

            try:
                await asyncio.to_thread(self.guard.run, [t.prepared for t in batch], sink)
            except Exception as exc:
                failure = EngineFailure(f"generation failed: {type(exc).__name__}: {exc}")
                for t in batch:
                    t.events.put_nowait(failure)
            for t in batch:
                t.events.put_nowait(None)


__all__ = ["Batcher", "EngineFailure", "Ticket"]
