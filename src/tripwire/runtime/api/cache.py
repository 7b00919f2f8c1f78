"""A per-tenant cache of expensive reads (``/v1/drift``, the dashboard's charts), keyed by the
read's parameters and valid for one *version* of the data: the newest event id the read covers.

A read first asks the database for that version (one indexed ``max(id)``); while no event has
arrived since, the answer is served from memory. A new event changes the version and the next
read recomputes. Each tenant has its own bounded LRU, so one tenant's reads never evict
another's, and tenants themselves are bounded. Thread-safe (sync routes run on a thread pool);
two concurrent misses may both compute, which costs time but never a wrong answer.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")


class ReadCache:
    def __init__(self, per_tenant: int = 64, tenants: int = 1024) -> None:
        self.per_tenant = per_tenant
        self.tenants = tenants
        self._lock = threading.Lock()
        self._data: OrderedDict[int, OrderedDict[Hashable, tuple[Hashable, Any]]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, tenant: int, key: Hashable, version: Hashable, compute: Callable[[], T]) -> T:
        """The cached value of ``key`` at ``version``, else ``compute()`` (stored)."""
        with self._lock:
            mine = self._data.get(tenant)
            hit = mine.get(key) if mine is not None else None
            if mine is not None and hit is not None and hit[0] == version:
                self._data.move_to_end(tenant)
                mine.move_to_end(key)
                self.hits += 1
                value: T = hit[1]
                return value
            self.misses += 1
        value = compute()
        with self._lock:
            mine = self._data.setdefault(tenant, OrderedDict())
            self._data.move_to_end(tenant)
            mine[key] = (version, value)
            mine.move_to_end(key)
            while len(mine) > self.per_tenant:
                mine.popitem(last=False)
            while len(self._data) > self.tenants:
                self._data.popitem(last=False)
        return value


__all__ = ["ReadCache"]
