"""What the routes share, as FastAPI dependencies on ``app.state`` (set by :func:`create_app`):
the engine, the config, the writer :class:`Service`, the key lookups, and the request's tenant.

Routes declare them as parameters (``engine: EngineDep``, ``tid: Tenant``), so a route can be
read, and tested, without the closure it used to live in. The accessors are ``async`` so FastAPI
calls them inline instead of on its thread pool; only :func:`bearer_tenant`, which queries the
database, runs there. :func:`ingest_key` (the ingest routes) answers from the key cache inline
and hops to the thread pool only on a miss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from tripwire.runtime.api.cache import ReadCache
from tripwire.runtime.keys import Keys
from tripwire.runtime.pipeline import RuntimeConfig
from tripwire.runtime.service import Service


async def get_engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


async def get_config(request: Request) -> RuntimeConfig:
    config: RuntimeConfig = request.app.state.config
    return config


async def get_service(request: Request) -> Service:
    """The writer, started by the app's lifespan."""
    service: Service = request.app.state.service
    return service


async def get_reads(request: Request) -> ReadCache:
    """The per-tenant cache of expensive reads, made on first use."""
    state = request.app.state
    if not hasattr(state, "reads"):
        state.reads = ReadCache()
    reads: ReadCache = state.reads
    return reads


async def get_keys(request: Request) -> Keys:
    keys: Keys = request.app.state.keys
    return keys


EngineDep = Annotated[Engine, Depends(get_engine)]
ConfigDep = Annotated[RuntimeConfig, Depends(get_config)]
ServiceDep = Annotated[Service, Depends(get_service)]
KeysDep = Annotated[Keys, Depends(get_keys)]
ReadsDep = Annotated[ReadCache, Depends(get_reads)]


def _bearer(request: Request) -> str:
    """The ``KEY`` of the request's ``Authorization: Bearer KEY``; 401 without one."""
    auth = request.headers.get("authorization", "")
    scheme, _, key = auth.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise HTTPException(
            401,
            "missing 'Authorization: Bearer KEY' header",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return key.strip()


def refused() -> HTTPException:
    return HTTPException(401, "invalid or revoked API key", headers={"WWW-Authenticate": "Bearer"})


def bearer_tenant(request: Request, keys: KeysDep) -> int:
    """The tenant of the request's ``Authorization: Bearer KEY`` (read from the database now);
    401 otherwise."""
    tid = keys.tenant(_bearer(request))
    if tid is None:
        raise refused()
    return tid


@dataclass(frozen=True)
class IngestKey:
    """An ingest request's key: its tenant, and its id for the writer to confirm at commit."""

    key: str
    key_id: int
    tenant: int


async def ingest_key(request: Request, keys: KeysDep) -> IngestKey:
    """The request's key from the in-process cache (inline, no thread hop), read from the
    database on a miss; 401 when it is not live. The writer confirms it inside the commit."""
    key = _bearer(request)
    found = keys.hit(key) or await run_in_threadpool(keys.cached, key)
    if found is None:
        raise refused()
    return IngestKey(key, found[0], found[1])


Tenant = Annotated[int, Depends(bearer_tenant)]
IngestAuth = Annotated[IngestKey, Depends(ingest_key)]

__all__ = [
    "ConfigDep",
    "EngineDep",
    "IngestAuth",
    "IngestKey",
    "KeysDep",
    "ReadsDep",
    "ServiceDep",
    "Tenant",
    "bearer_tenant",
    "get_config",
    "get_engine",
    "get_keys",
    "get_reads",
    "get_service",
    "ingest_key",
    "refused",
]
