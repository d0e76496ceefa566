"""Running the app under uvicorn: `bind` then `serve` in the foreground (`gpt2 serve`), or a
`BackgroundServer` in a thread on a free loopback port (the tests, the load benchmark, a
notebook). Both stop gracefully: on SIGTERM/SIGINT the model worker first refuses what waits
and fails what runs in OpenAI's error shape, so streams end with an error event, not a cut."""

from __future__ import annotations

import contextlib
import functools
import socket
import threading
import time
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol


class TimedH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, closing a connection whose first request head has not
    arrived within `head_timeout` seconds: a client sending its headers a byte at a time
    (slowloris) would otherwise hold the connection for ever. Idle keep-alive connections
    are closed by uvicorn's own keep-alive timeout."""

    def __init__(self, *args: Any, head_timeout: float = 30.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.head_timeout = head_timeout

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self.loop.call_later(self.head_timeout, self._head_too_slow)

    def _head_too_slow(self) -> None:
        if self.cycle is None and not self.transport.is_closing():  # no request head yet
            self.transport.close()


def server_config(app: Any, graceful: float) -> uvicorn.Config:
    """uvicorn's settings for `app`, with its read timeout (app.state.read_timeout) on request heads."""
    timeout = getattr(getattr(app, "state", None), "read_timeout", 30.0)
    return uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=graceful,
                          http=functools.partial(TimedH11Protocol, head_timeout=timeout))


class GracefulServer(uvicorn.Server):
    """uvicorn's server, telling the app's model worker when shutdown begins (uvicorn itself
    would wait for open streams and then cut them)."""

    def handle_exit(self, sig: int, frame: Any) -> None:
        worker = getattr(getattr(self.config.app, "state", None), "worker", None)
        if worker is not None:
            worker.begin_shutdown()
        super().handle_exit(sig, frame)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (OSError, e.g. the port is in use, before anything is announced)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def serve(app: Any, sock: socket.socket) -> None:
    """Serve `app` on the bound `sock` until SIGTERM or SIGINT."""
    config = server_config(app, graceful=5)
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn raises Ctrl-C again once it has shut down
        GracefulServer(config).run(sockets=[sock])


class BackgroundServer:
    """`with BackgroundServer(app) as server:` serves `app` at `server.url` until the block ends.

    The socket is bound before uvicorn starts (port 0 = any free port), so there is no race
    between choosing a port and listening on it.
    """

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, start_timeout: float = 30.0) -> None:
        self.app, self.host, self.port, self.start_timeout = app, host, port, start_timeout
        self.url = ""
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> BackgroundServer:
        sock = bind(self.host, self.port)
        self.port = sock.getsockname()[1]
        self.url = f"http://{self.host}:{self.port}"
        config = server_config(self.app, graceful=2)
        self._server = GracefulServer(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        name="gpt2-uvicorn", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + self.start_timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the server at {self.url} did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None and self._thread is not None
        self._server.should_exit = True
        self._thread.join(10)
