"""What keeps web pages on other sites away from a server on this machine.

A browser lets any page send requests to 127.0.0.1. Three checks close the ways in:

- **Host**: a page on attacker.example can make its own name resolve to 127.0.0.1 (DNS
  rebinding); its requests then carry `Host: attacker.example`. Only the names the server
  was bound to (and `--allowed_hosts`) are answered.
- **Origin**: a browser names the page that sent a request in `Origin`. Requests from another
  origin are refused unless `--cors_origins` lists it (then they get CORS headers).
- **Content-Type**: a page may POST `text/plain` without asking first (no CORS preflight);
  the API reads only `application/json`, which a page cannot send cross-origin unasked.

Every refusal is OpenAI's JSON error shape. The checks are plain ASGI middleware, so they run
before any route, the playground's files included.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

from gpt2.serving.errors import error_body

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
ASGIApp = Callable[[dict, Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]], Awaitable[None]]


def allowed_hosts(host: str, extra: Iterable[str] = ()) -> set[str]:
    """The Host names a server bound to `host` answers: a loopback address answers every
    loopback name; 0.0.0.0 (every interface) cannot know its names, so it needs `extra`
    ('*' allows any)."""
    names = set(LOOPBACK_NAMES) if host in LOOPBACK_NAMES else {host}
    return {name.lower() for name in (*names, *extra)}


def _host_name(value: str) -> str:
    """'example.com:8000' -> 'example.com'; '[::1]:8000' -> '::1'."""
    return (urlsplit(f"//{value}").hostname or "").lower()


class RequestGuard:
    """ASGI middleware refusing requests with a foreign Host, a foreign Origin, or a POST body
    that is not JSON."""

    def __init__(self, app: ASGIApp, hosts: set[str], cors_origins: Iterable[str] = ()) -> None:
        self.app = app
        self.hosts = hosts
        self.cors_origins = {origin.rstrip("/").lower() for origin in cors_origins}

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {name.decode("latin-1").lower(): value.decode("latin-1")
                   for name, value in scope["headers"]}
        problem = self._problem(scope, headers)
        if problem is None:
            return await self.app(scope, receive, send)
        status, message = problem
        body = json.dumps(error_body(status, message, code="request_refused")).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    def _problem(self, scope: dict, headers: dict[str, str]) -> tuple[int, str] | None:
        host = _host_name(headers.get("host", ""))
        if "*" not in self.hosts and host not in self.hosts:
            return 421, (f"this server does not answer for the host {host or '(none)'!r}; "
                         "start it with --allowed_hosts to add a name")
        origin = headers.get("origin")
        own = headers.get("host", "").lower()
        same_origin = origin is not None and urlsplit(origin).netloc.lower() == own
        if origin is not None and not same_origin and origin.rstrip("/").lower() not in self.cors_origins:
            return 403, (f"requests from the web page at {origin} are refused; "
                         "start the server with --cors_origins to allow it")
        if scope["method"] == "POST":
            content_type = headers.get("content-type", "").split(";")[0].strip().lower()
            if content_type != "application/json":
                return 415, (f"the request body must be JSON with 'Content-Type: application/json', "
                             f"got {content_type or 'no Content-Type'!r}")
        return None
