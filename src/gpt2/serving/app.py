"""The HTTP application: OpenAI's completions API, a health check and the playground.

    GET  /v1/models          the one model served
    POST /v1/completions     OpenAI's completions, streamed as server-sent events on request
    POST /v1/chat/completions  OpenAI's chat completions (the messages through the chat template)
    GET  /health             liveness plus the worker's counters (no API key needed)
    GET  /                   the playground (static/, no network needed)

Requests are checked here (JSON shape, limits, the prompt's encoding through the text layer)
and queued; the model worker decodes them with continuous batching; responses.py turns its
events back into HTTP.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles

from gpt2.generation.text import TextGenerator
from gpt2.serving.chat_protocol import ChatCompletionRequest, ChatShape
from gpt2.serving.errors import APIError, install_error_handlers
from gpt2.serving.guard import RequestGuard, allowed_hosts
from gpt2.serving.intake import chat_job, completion_job, parse, read_body
from gpt2.serving.jobs import Job
from gpt2.serving.options import ServeLimits
from gpt2.serving.protocol import CompletionRequest, CompletionShape, SamplingRequest
from gpt2.serving.responses import Shape, event_stream, whole_response
from gpt2.serving.scheduler import QueueFullError, Scheduler
from gpt2.serving.worker import ModelWorker

STATIC = Path(__file__).parent / "static"


def create_app(text: TextGenerator, model_name: str, limits: ServeLimits | None = None,
               api_key: str | None = None, hosts: set[str] | None = None, cors_origins: Sequence[str] = (),
               example_prompt: str = "") -> FastAPI:
    """An app serving `text` under `model_name`; its model worker runs while the app does.
    `hosts`: the Host names it answers (default: loopback's); `cors_origins`: other web pages
    allowed to call it (see guard.py); `example_prompt`: what the playground starts with."""
    limits = limits or ServeLimits()
    worker = ModelWorker(text, Scheduler(limits.max_queue), limits.max_batch)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        worker.start()
        yield
        await asyncio.to_thread(worker.stop)

    # No /docs (they need a CDN); no /openapi.json behind an API key (it would describe the API
    # to anyone without one).
    app = FastAPI(title="gpt2 serve", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None if api_key else "/openapi.json")
    app.state.worker = worker
    app.state.read_timeout = limits.read_timeout  # for the protocol's head timeout (background.py)
    if cors_origins:  # inside the guard: it answers the allowed pages' preflight requests
        app.add_middleware(CORSMiddleware, allow_origins=list(cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])
    app.add_middleware(RequestGuard, hosts=hosts or allowed_hosts("127.0.0.1"), cors_origins=cors_origins)
    install_error_handlers(app)
    authorized = [Depends(_bearer(api_key))]
    created = int(time.time())
    model_card = {"id": model_name, "object": "model", "created": created, "owned_by": "gpt2-from-scratch"}

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "model": model_name, "example_prompt": example_prompt, **worker.snapshot()}

    @app.get("/v1/models", dependencies=authorized)
    async def models() -> dict:
        return {"object": "list", "data": [model_card]}

    @app.get("/v1/models/{name}", dependencies=authorized)
    async def model(name: str) -> dict:
        if name != model_name:
            raise APIError(404, f"the model {name!r} does not exist; this server has {model_name!r}",
                           "model", "model_not_found")
        return model_card

    async def serve(request: Request, body: SamplingRequest, job: Job, shape: Shape) -> Response:
        """Queue `job` and answer with its stream or its whole response, in `shape`."""
        if body.model is not None and body.model != model_name:
            raise APIError(404, f"the model {body.model!r} does not exist; this server has {model_name!r}",
                           "model", "model_not_found")
        try:
            worker.scheduler.submit(job)
        except QueueFullError as err:
            raise APIError(429, f"the server is busy ({err}); retry shortly", code="queue_full") from None
        if body.stream:
            return StreamingResponse(event_stream(job, shape, body.include_usage),
                                     media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        return JSONResponse(await whole_response(job, request, shape))

    @app.post("/v1/completions", dependencies=authorized, response_model=None)
    async def completions(request: Request) -> Response:
        body = parse(await read_body(request, limits), CompletionRequest)
        return await serve(request, body, completion_job(body, text, limits), CompletionShape(model_name))

    @app.post("/v1/chat/completions", dependencies=authorized, response_model=None)
    async def chat_completions(request: Request) -> Response:
        body = parse(await read_body(request, limits), ChatCompletionRequest)
        return await serve(request, body, chat_job(body, text, limits), ChatShape(model_name))

    @app.get("/", include_in_schema=False)
    async def playground() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def _bearer(api_key: str | None):
    """A dependency refusing requests without `Authorization: Bearer <api_key>` (if a key is set)."""

    async def check(request: Request) -> None:
        if api_key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(token.strip().encode(), api_key.encode()):
            raise APIError(401, "missing or wrong API key: send the header 'Authorization: Bearer <key>'",
                           code="invalid_api_key")

    return check
