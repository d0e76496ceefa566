"""`gpt2 serve`: load a checkpoint once and serve it over HTTP (OpenAI's completions API and a
playground at /) until interrupted.

This module is the command-line side only (options, loading, binding); the application
itself is `gpt2.serving.app.create_app`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from gpt2.commands.options import flat_command
from gpt2.device_options import DeviceOptions
from gpt2.errors import GPT2Error
from gpt2.serving.options import ServeLimits

LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class ServeOptions:
    """What to serve, and where.

    Args:
        checkpoint: Our checkpoint directory or a local Hugging Face GPT-2 directory.
        host: Address to listen on; the default answers this machine only. 0.0.0.0 opens it to the network.
        port: TCP port to listen on.
        api_key: If set, /v1/* requests must send 'Authorization: Bearer <api_key>' (others get 401).
        model_name: The model's id in the API (default: the checkpoint folder's name).
        tokenizer: Override the checkpoint's tokenizer: gpt2, a tokenizer directory, or a .model file.
    """

    checkpoint: str
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    model_name: str | None = None
    tokenizer: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise GPT2Error(f"--port must be in 0..65535, got {self.port!r}")
        if self.api_key is not None and not self.api_key.strip():
            raise GPT2Error("--api_key must not be empty (leave it out for no key)")


def _web_stack() -> tuple:
    """uvicorn and our app factory, imported only to serve: the web stack is the optional
    `serve` extra, and the other commands must work where it is not installed."""
    try:
        import uvicorn

        from gpt2.serving.app import create_app
    except ImportError as err:
        raise GPT2Error(f"gpt2 serve needs {err.name}: pip install 'gpt2-from-scratch[serve]'") from None
    return uvicorn, create_app


def _run(options: ServeOptions, limits: ServeLimits, system: DeviceOptions) -> None:
    # Imported here, not at the top, so that --help does not import torch (see commands/__init__.py).
    from gpt2.generation.text import TextGenerator

    uvicorn, create_app = _web_stack()
    text = TextGenerator.load(options.checkpoint, options.tokenizer, system)  # as gpt2 generate does
    name = options.model_name or Path(options.checkpoint).resolve().name
    app = create_app(text, name, limits, options.api_key)
    if options.host not in LOOPBACK and options.api_key is None:
        print(f"gpt2: warning: serving on {options.host} without --api_key: anyone who can reach this "
              "port can use the model", file=sys.stderr)
    print(f"gpt2: serving {name} at http://{options.host}:{options.port}/ (API: /v1)", file=sys.stderr)
    uvicorn.run(app, host=options.host, port=options.port, log_level="warning", timeout_graceful_shutdown=5)


serve = flat_command(_run, ServeOptions, ServeLimits, DeviceOptions, name="serve", doc="""\
Serve a checkpoint over HTTP: OpenAI's completions API and a playground in the browser.

Endpoints: GET /v1/models, POST /v1/completions (streamed with "stream": true), GET /health,
and the playground at /. Concurrent requests are decoded together in batches. Example:
gpt2 serve --checkpoint runs/shakespeare_cpu/best --port 8000""")
