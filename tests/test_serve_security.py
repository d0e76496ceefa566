"""A web page on another site cannot use `gpt2 serve` on this machine (DNS rebinding, cross-origin
requests, bodies a page may send without asking), the API key hides the schema too, a busy port
is refused before anything is announced, and shutdown answers every client in OpenAI's shape."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest

from gpt2.serving.app import create_app
from gpt2.serving.background import BackgroundServer
from gpt2.serving.options import ServeLimits
from test_serve_helpers import save_tiny_checkpoint, tiny_text

pytestmark = pytest.mark.usefixtures("one_thread")
BODY = json.dumps({"prompt": "ab", "max_tokens": 2, "temperature": 0})
ROUTES = [("GET", "/"), ("GET", "/health"), ("GET", "/v1/models"), ("POST", "/v1/completions"),
          ("GET", "/openapi.json"), ("GET", "/static/playground.js")]


@pytest.fixture(scope="module")
def server():
    app = create_app(tiny_text(), "tiny", ServeLimits(), cors_origins=["http://localhost:3000"])
    with BackgroundServer(app) as running:
        yield running


def send(server: BackgroundServer, method: str, path: str, **headers: str) -> httpx.Response:
    headers = {"Content-Type": "application/json", **headers}
    content = BODY if method == "POST" else None
    return httpx.request(method, server.url + path, headers=headers, content=content, timeout=30)


@pytest.mark.parametrize("method, path", ROUTES)
@pytest.mark.parametrize("host", ["attacker.example", "attacker.example:8000", "127.0.0.1.attacker.example",
                                  "localhost.", ""])
def test_a_foreign_host_is_refused_on_every_route(server, method: str, path: str, host: str) -> None:
    response = send(server, method, path, Host=host)
    assert response.status_code == 421
    assert "does not answer for the host" in response.json()["error"]["message"]


@pytest.mark.parametrize("method, path", ROUTES)
@pytest.mark.parametrize("origin", ["http://attacker.example", "http://127.0.0.1:1", "null",
                                    "http://localhost:3000.attacker.example"])
def test_a_foreign_origin_is_refused_on_every_route(server, method: str, path: str, origin: str) -> None:
    response = send(server, method, path, Origin=origin)
    assert response.status_code == 403 and "--cors_origins" in response.json()["error"]["message"]


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data", "", "application/jsonx"])
def test_a_post_body_that_is_not_json_is_refused(server, content_type: str) -> None:
    response = send(server, "POST", "/v1/completions", **{"Content-Type": content_type})
    assert response.status_code == 415 and response.json()["error"]["type"] == "invalid_request_error"


def test_the_same_origin_and_allowed_origins_are_served(server) -> None:
    port = server.url.rsplit(":", 1)[1]
    for host in (f"127.0.0.1:{port}", f"localhost:{port}"):
        same = send(server, "POST", "/v1/completions", Host=host, Origin=f"http://{host}")
        assert same.status_code == 200, same.text  # the playground's own requests
    allowed = send(server, "POST", "/v1/completions", Origin="http://localhost:3000")
    assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == "http://localhost:3000"
    preflight = httpx.options(server.url + "/v1/completions", headers={
        "Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 200 and "POST" in preflight.headers["access-control-allow-methods"]


def test_the_api_key_hides_the_schema_too() -> None:
    with BackgroundServer(create_app(tiny_text(), "tiny", ServeLimits(), api_key="k")) as keyed:
        assert httpx.get(keyed.url + "/openapi.json").status_code == 404
    with BackgroundServer(create_app(tiny_text(), "tiny", ServeLimits())) as open_server:
        assert httpx.get(open_server.url + "/openapi.json").status_code == 200


def serve_command(checkpoint, port: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "gpt2", "serve", "--checkpoint", str(checkpoint), "--port", str(port),
            "--device", "cpu", "--dtype", "float32", "--threads", "1", "--compile", "false", *extra]


def test_a_port_in_use_is_one_line_before_anything_is_announced(tmp_path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = subprocess.run(serve_command(tmp_path / "missing", port), capture_output=True, text=True,
                              timeout=60)
    assert proc.returncode != 0 and "serving" not in proc.stderr and "Traceback" not in proc.stderr
    assert f"--port {port}: cannot listen" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_shutdown_ends_streams_with_an_error_event_and_refuses_the_queue_in_json(tmp_path, sig) -> None:
    checkpoint = save_tiny_checkpoint(tmp_path / "ckpt")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(serve_command(checkpoint, port, "--max_batch", "1", "--max_n", "1",
                                          "--max_tokens_limit", "100000"),
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, "gpt2 serve did not start"
            try:
                if httpx.get(f"{url}/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        body = {"prompt": "ab", "max_tokens": 100000, "temperature": 0}
        with httpx.Client(base_url=url, timeout=60) as client, \
                client.stream("POST", "/v1/completions", json={**body, "stream": True}) as running:
            lines = running.iter_lines()
            assert next(lines).startswith("data: {")
            with httpx.Client(base_url=url, timeout=60) as other:
                queued: list[httpx.Response] = []
                waiter = threading.Thread(
                    target=lambda: queued.append(other.post("/v1/completions", json=body)))
                waiter.start()
                while httpx.get(f"{url}/health").json()["queued"] != 1:
                    time.sleep(0.05)
                proc.send_signal(sig)
                rest = [line for line in lines if line.startswith("data: ")]
                waiter.join(30)
        errors = [json.loads(line[6:]) for line in rest if line.startswith("data: {") and '"error"' in line]
        assert errors and errors[-1]["error"]["message"].startswith("the server is shutting down")
        assert queued[0].status_code == 503 and "shutting down" in queued[0].json()["error"]["message"]
        _, stderr = proc.communicate(timeout=30)
        assert "Traceback" not in stderr
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.fixture(scope="module")
def quick_timeout():
    with BackgroundServer(create_app(tiny_text(), "tiny", ServeLimits(read_timeout=1.0))) as running:
        yield running


def connect(server: BackgroundServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", int(server.url.rsplit(":", 1)[1])), timeout=15)
    return sock


def test_a_client_too_slow_to_send_its_head_is_disconnected(quick_timeout) -> None:
    slow = [connect(quick_timeout) for _ in range(20)]
    for sock in slow:
        sock.sendall(b"GET /health HTTP/1.1\r\nHo")  # and nothing more
    assert httpx.get(quick_timeout.url + "/health", timeout=10).status_code == 200  # others are served
    start = time.monotonic()
    assert all(sock.recv(100) == b"" for sock in slow)  # closed by the server
    assert time.monotonic() - start < 10
    for sock in slow:
        sock.close()


def test_a_stalled_body_gets_408_and_a_vanished_client_logs_no_traceback(quick_timeout, caplog) -> None:
    head = (b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n{\"prompt\": ")
    with connect(quick_timeout) as stalled:
        stalled.sendall(head)
        answer = ""
        while not answer.endswith("}}"):  # the head, then the JSON body
            answer += stalled.recv(4096).decode()
    assert answer.startswith("HTTP/1.1 408") and "did not arrive within 1 s" in answer
    for _ in range(10):
        with connect(quick_timeout) as gone:
            gone.sendall(head)
    time.sleep(1.5)
    assert not [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]
