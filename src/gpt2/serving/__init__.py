"""`gpt2 serve`: an OpenAI-compatible HTTP API over one model, and a web playground.

    options.py    ServeLimits: batch size, queue depth, request limits
    protocol.py   request/response bodies in OpenAI's completions format
    errors.py     every error as OpenAI's {"error": {...}} JSON
  the HTTP side:
    responses.py  events -> one JSON response or server-sent events; client disconnects
    guard.py      Host, Origin and Content-Type checks against web pages on other sites
    app.py        the FastAPI app (routes, auth, limits) and the static playground
  the model side:
    jobs.py       a request on its way through the worker, and the events it sends back
    scheduler.py  the first-in, first-out queue of waiting requests
    choices.py    one choice of a request: engine events -> text (the text layer) + logprobs
    worker.py     the one thread that owns the model and the engine (continuous batching)
    background.py uvicorn with a graceful shutdown: `gpt2 serve`'s, and BackgroundServer on a
                  free loopback port in a thread (tests, benchmarks)

The web stack (fastapi, uvicorn: the `serve` extra) is imported by app.py and background.py
only, so `gpt2.serving.options` and the other commands work where it is not installed.
"""
