"""A small FastAPI app for ``uvicorn --workers 2``: each worker process opens its own
Hephaestus app on PostgreSQL (``HX_MP_DSN``) for its lifetime.

``POST /start/{value}`` starts an ``Approval`` run, ``POST /resume/{value}`` sends it
``received``; both answer with the pid that served them, or 500 and the error.
"""

from __future__ import annotations

import os
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from hephaestus import Hephaestus
from hephaestus.runners import LocalRunner
from hephaestus.storage.postgres import PostgresStorage
from tests.multiprocess._flows import Approval, close_recorder, open_recorder

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable


@asynccontextmanager
async def lifespan(api: FastAPI) -> AsyncIterator[None]:
    """Open the engine when the worker starts, close it when the worker stops."""
    dsn = os.environ["HX_MP_DSN"]
    open_recorder(f"{dsn} application_name=rec-uvicorn")
    engine = Hephaestus(
        storage=PostgresStorage(f"{dsn} application_name=uvicorn", max_size=5),
        runner=LocalRunner(max_threads=16),
        workflows=[Approval],
    )
    async with engine:
        api.state.engine = engine
        yield
    close_recorder()


app = FastAPI(lifespan=lifespan)


async def _answer(call: Awaitable[object]) -> JSONResponse:
    try:
        await call
    except Exception as exc:  # reported to the client, which counts failures
        return JSONResponse(
            {"pid": os.getpid(), "error": f"{type(exc).__name__}: {exc}"}, status_code=500
        )
    return JSONResponse({"pid": os.getpid()})


@app.get("/pid")
async def pid() -> JSONResponse:
    """Which worker answered (the test waits until both have)."""
    return JSONResponse({"pid": os.getpid()})


@app.post("/start/{value}")
async def start(value: str) -> JSONResponse:
    """Start an ``Approval`` run for ``value``."""
    return await _answer(Approval.start(value, app=app.state.engine))


@app.post("/resume/{value}")
async def resume(value: str) -> JSONResponse:
    """Deliver ``received`` to the run of ``value``."""
    return await _answer(Approval.resume(value, "received", app=app.state.engine))
