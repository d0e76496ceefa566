"""`gpt2 serve`: an OpenAI-compatible HTTP API over one model, and a web playground.

    options.py    ServeLimits: batch size, queue depth, request limits
    protocol.py   request/response bodies in OpenAI's completions format
    errors.py     every error as OpenAI's {"error": {...}} JSON
    jobs.py       a request on its way through the worker, and the events it sends back
    scheduler.py  the queue: oldest first, with everything that can share its batch
    worker.py     the one thread that owns the model
    batch.py      one batch: left-padded rows through generate_stream, ids -> text + logprobs
    stops.py      OpenAI-style stop strings over streamed text
    responses.py  events -> one JSON response or server-sent events; client disconnects
    app.py        the FastAPI app (routes, auth, limits) and the static playground
    background.py BackgroundServer: the app on a free loopback port in a thread (tests, benchmarks)

The web stack (fastapi, uvicorn: the `serve` extra) is imported by app.py and background.py
only, so `gpt2.serving.options` and the other commands work where it is not installed.
"""
