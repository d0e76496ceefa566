"""`gpt2 serve`: load a checkpoint once and serve it over HTTP (OpenAI's completions API and a
playground at /) until interrupted.

This module is the command-line side only (options, loading, binding); the application
itself is `gpt2.serving.app.create_app`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpt2.commands.options import flat_command
from gpt2.errors import GPT2Error
from gpt2.generation.options import DecodingOptions
from gpt2.runtime.options import DeviceOptions
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
        model_name: The model's id in the API (default: the run's name, e.g. shakespeare_cpu for
            runs/shakespeare_cpu/best, or the checkpoint folder's name).
        tokenizer: Override the checkpoint's tokenizer: gpt2, a tokenizer directory, or a .model file.
        allowed_hosts: More Host names to answer besides the bound address (e.g. the machine's name
            when serving on 0.0.0.0; '*' answers any, which lets DNS-rebinding pages in).
        cors_origins: Web pages on other origins allowed to call the API from a browser, e.g.
            http://localhost:3000 (others are refused).
    """

    checkpoint: str
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    model_name: str | None = None
    tokenizer: str | None = None
    allowed_hosts: list[str] | None = None
    cors_origins: list[str] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise GPT2Error(f"--port must be in 0..65535, got {self.port!r}")
        if self.api_key is not None and not self.api_key.strip():
            raise GPT2Error("--api_key must not be empty (leave it out for no key)")


def _web_stack() -> Any:
    """Our app factory, imported only to serve: the web stack (fastapi, uvicorn) is the optional
    `serve` extra, and the other commands must work where it is not installed."""
    try:
        import uvicorn  # noqa: F401

        from gpt2.serving.app import create_app
    except ImportError as err:
        raise GPT2Error(f"gpt2 serve needs {err.name}: pip install 'gpt2-from-scratch[serve]'") from None
    return create_app


def _run(options: ServeOptions, limits: ServeLimits, system: DeviceOptions,
         decoding: DecodingOptions) -> None:
    # Imported here, not at the top, so that --help does not import torch (see commands/__init__.py).
    from gpt2.generation.text import TextGenerator
    from gpt2.serving.guard import allowed_hosts

    create_app = _web_stack()
    from gpt2.serving.background import bind, serve

    try:
        sock = bind(options.host, options.port)  # before loading or announcing anything
    except OSError as err:
        raise GPT2Error(f"--port {options.port}: cannot listen on {options.host}:{options.port} "
                        f"({err.strerror}); is another server using it? Choose another --port") from None
    text = TextGenerator.load(options.checkpoint, options.tokenizer, system,  # as gpt2 generate does
                              rows=limits.max_batch, decoder=decoding.decoder(server=True), purpose="serve")
    name = options.model_name or run_name(Path(options.checkpoint))
    hosts = allowed_hosts(options.host, options.allowed_hosts or ())
    app = create_app(text, name, limits, options.api_key, hosts, options.cors_origins or (),
                     example_prompt(Path(options.checkpoint)))
    if options.host not in LOOPBACK and options.api_key is None:
        print(f"gpt2: warning: serving on {options.host} without --api_key: anyone who can reach this "
              "port can use the model", file=sys.stderr)
    port = sock.getsockname()[1]
    print(f"gpt2: serving {name} at http://{options.host}:{port}/ (API: /v1)", file=sys.stderr)
    serve(app, sock)


def run_name(checkpoint: Path) -> str:
    """runs/shakespeare_cpu/best -> shakespeare_cpu; any other folder -> its own name."""
    path = checkpoint.resolve()
    return path.parent.name if path.name in ("best", "latest") and path.parent.name else path.name


def example_prompt(checkpoint: Path) -> str:
    """The prompt the run's samples started from (a line of its own validation text), if known."""
    from gpt2.files import read_json

    path = checkpoint / "train_config.json"
    try:
        prompt = read_json(path, "").get("eval", {}).get("prompt") if path.is_file() else None
    except (GPT2Error, AttributeError):
        return ""
    return prompt if isinstance(prompt, str) else ""


serve = flat_command(_run, ServeOptions, ServeLimits, DeviceOptions, DecodingOptions, name="serve", doc="""\
Serve a checkpoint over HTTP: OpenAI's completions API and a playground in the browser.

Endpoints: GET /v1/models, POST /v1/completions (streamed with "stream": true), GET /health,
and the playground at /. Concurrent requests share one batch, each with its own settings:
a new request joins at the next token, a finished one leaves at once. Example:
gpt2 serve --checkpoint runs/shakespeare_cpu/best --port 8000""")
