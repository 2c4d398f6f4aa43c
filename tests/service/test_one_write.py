"""Responses as gunicorn's workers write them with the project's gunicorn.conf.py: the headers
and a small body in one write (a kill can't fall between them), and the same bytes as gunicorn's
own responses otherwise. Driven as a gunicorn worker drives a response (wsgi.create, the app,
write, close), on a socket that records each write."""

import importlib.util
import socket
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
from gunicorn import util
from gunicorn.config import Config
from gunicorn.http import RequestParser, wsgi

from rest_api import app as project_app

pytestmark = pytest.mark.unit

CONFIG_FILE = Path(__file__).resolve().parents[2] / "service" / "gunicorn.conf.py"
CLIENT = ("10.0.0.2", 40000)
SERVER = ("10.0.0.3", 8000)
StartResponse = Callable[..., Any]
App = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class RecordingSocket:
    """A socket whose sendall keeps each write instead of sending it."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.writes: list[bytes] = []

    def sendall(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def load_config() -> ModuleType:
    spec = importlib.util.spec_from_file_location("project_gunicorn_conf", CONFIG_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def writes_of(app: App, method: str, path: str = "/") -> list[bytes]:
    """The writes of the response of `app` to an HTTP/1.1 request, as a worker sends it."""
    raw = f"{method} {path} HTTP/1.1\r\nHost: api\r\n\r\n".encode()
    request = next(RequestParser(Config(), [raw], CLIENT))
    with socket.socket() as sock:
        recording = RecordingSocket(sock)
        response, environ = wsgi.create(request, recording, CLIENT, SERVER, Config())
        body = app(environ, response.start_response)
        try:
            for item in body:
                response.write(item)
            response.close()
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()
    return recording.writes


def streamed(environ: dict[str, Any], start_response: StartResponse) -> Iterator[bytes]:
    """No Content-Length: chunked, an empty piece among the others."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield from [b"first ", b"", b"second"]


def no_content(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
    start_response("204 No Content", [])
    return []


def large(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
    body = b"x" * 100_000
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]


CASES: dict[str, tuple[App, str, str]] = {
    "json": (project_app, "GET", "/"),
    "head": (project_app, "HEAD", "/"),
    "not-found": (project_app, "GET", "/nothing-here"),
    "chunked": (streamed, "GET", "/"),
    "no-content": (no_content, "GET", "/"),
    "large": (large, "GET", "/"),
}


@pytest.fixture
def stock() -> type:
    return wsgi.Response  # type: ignore[no-any-return]


@pytest.fixture
def configured(monkeypatch: pytest.MonkeyPatch, stock: type) -> None:
    """The responses of a worker that started as the project's config starts them."""
    monkeypatch.setattr(wsgi, "Response", stock)  # gunicorn's own again after the test
    monkeypatch.setattr(util, "http_date", lambda *_: "Thu, 01 Jan 2026 00:00:00 GMT")
    load_config().post_worker_init(SimpleNamespace())


@pytest.mark.usefixtures("configured")
@pytest.mark.parametrize("case", ["json", "not-found", "head", "no-content"])
def test_headers_and_a_small_body_go_out_in_one_write(case: str) -> None:
    app, method, path = CASES[case]

    writes = writes_of(app, method, path)

    assert len(writes) == 1, f"{case}: {len(writes)} writes: {writes}"
    headers, _, body = writes[0].partition(b"\r\n\r\n")
    if method == "GET" and case != "no-content":
        assert f"Content-Length: {len(body)}".encode() in headers, writes[0]


@pytest.mark.usefixtures("configured")
@pytest.mark.parametrize("case", list(CASES))
def test_the_bytes_sent_are_gunicorns_own(
    case: str, monkeypatch: pytest.MonkeyPatch, stock: type
) -> None:
    app, method, path = CASES[case]
    sent = b"".join(writes_of(app, method, path))
    monkeypatch.setattr(wsgi, "Response", stock)

    assert sent == b"".join(writes_of(app, method, path))


@pytest.mark.usefixtures("configured")
def test_a_chunked_response_starts_with_its_headers_and_first_piece() -> None:
    writes = writes_of(streamed, "GET", "/")

    assert writes[0].endswith(b"\r\n\r\n6\r\nfirst \r\n"), writes
    assert writes[-1] == b"0\r\n\r\n", writes
