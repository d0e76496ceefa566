"""Errors in OpenAI's wire format: `{"error": {"message", "type", "param", "code"}}`.

Every refusal the server makes goes through `APIError`, and the handlers below turn
FastAPI's own refusals (bad JSON, wrong types, unknown fields, unknown routes) and any
unexpected exception into the same shape, so a client never sees a traceback or HTML.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

log = logging.getLogger("gpt2.serving")

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
          408: "invalid_request_error", 413: "invalid_request_error", 421: "invalid_request_error",
          429: "rate_limit_error", 500: "server_error", 503: "server_error"}


class APIError(Exception):
    """A refusal with its HTTP status; `param` names the offending request field."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


def error_body(status: int, message: str, param: str | None = None, code: str | None = None) -> dict:
    """The JSON body OpenAI's API (and its clients) use for an error."""
    return {"error": {"message": message, "type": _TYPES.get(status, "invalid_request_error"),
                      "param": param, "code": code}}


def error_response(status: int, message: str, param: str | None = None, code: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message, param, code), status_code=status, headers=headers)


def _describe(err: dict) -> tuple[str, str | None]:
    """One pydantic error -> (a readable sentence, the field it is about)."""
    loc = [str(part) for part in err.get("loc", ()) if part != "body"]
    field = ".".join(loc) or None
    if err.get("type") == "json_invalid":
        return f"the request body is not valid JSON: {err.get('ctx', {}).get('error', err['msg'])}", None
    if err.get("type") == "extra_forbidden":
        return f"unknown field {field!r}", field
    if err.get("type") == "missing":
        return f"missing required field {field!r}", field
    return (f"{field}: {err['msg']}" if field else err["msg"]), field


def install_error_handlers(app: FastAPI) -> None:
    """Make every error the app can answer look like OpenAI's."""

    @app.exception_handler(APIError)
    async def api_error(_: Request, err: APIError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if err.status == 401 else None
        return error_response(err.status, err.message, err.param, err.code, headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, err: RequestValidationError) -> JSONResponse:
        problems = [_describe(e) for e in err.errors()]
        message = "; ".join(text for text, _ in problems) or "invalid request"
        return error_response(400, message, problems[0][1] if problems else None)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, err: HTTPException) -> JSONResponse:
        return error_response(err.status_code, str(err.detail), headers=err.headers)

    @app.exception_handler(Exception)
    async def crashed(_: Request, err: Exception) -> JSONResponse:
        log.exception("unexpected error while serving a request")
        return error_response(500, f"internal error: {type(err).__name__}")
