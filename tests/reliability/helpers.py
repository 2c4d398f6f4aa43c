"""What the reliability tests share: bounded waits, raw HTTP exchanges, the stack's containers,
and the checks every proxy answer must pass."""

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import docker
import docker.errors
import requests
from docker.models.containers import Container

import contract
from tests.engine_stacks import PROJECT, Endpoint, EngineStack, connect

T = TypeVar("T")
# Every request has a timeout: a hang is a failure, not a stuck test run.
REQUEST_TIMEOUT = 10.0
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


def eventually(check: Callable[[], T], timeout: float, interval: float = 0.25) -> T:
    """Call `check` until it returns without raising; past `timeout` (monotonic), fail with
    what it last raised."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except (AssertionError, OSError, requests.RequestException, docker.errors.APIError) as e:
            if time.monotonic() >= deadline:
                raise AssertionError(f"not so within {timeout:.0f}s; last seen: {e}") from e
        time.sleep(interval)


def tag_image(client: docker.DockerClient, source: str, reference: str) -> None:
    """Give the image `source` another name, `repository:tag`."""
    repository, _, tag = reference.rpartition(":")
    client.images.get(source).tag(repository, tag)


# --- the stack's containers -----------------------------------------------------------------


def stack_containers(client: docker.DockerClient, stack: EngineStack) -> list[Container]:
    """Every container labelled as the stack's, running or not."""
    labels = [f"{contract.LABEL_PROJECT}={PROJECT}", f"{contract.LABEL_STACK}={stack.name}"]
    return list(client.containers.list(all=True, filters={"label": labels}))


def api_containers(client: docker.DockerClient, stack: EngineStack) -> list[Container]:
    return [client.containers.get(name) for name in stack.exports[contract.EXPORT_API_CONTAINERS]]


def proxy_container(client: docker.DockerClient, stack: EngineStack) -> Container:
    return client.containers.get(stack.exports[contract.EXPORT_PROXY_CONTAINER])


def lifetimes(containers: list[Container]) -> dict[str, tuple[str, int, str]]:
    """Per container name: id, restart count and start time; any restart changes them."""
    for container in containers:
        container.reload()
    return {
        str(c.name): (str(c.id), int(c.attrs["RestartCount"]), c.attrs["State"]["StartedAt"])
        for c in containers
    }


def assert_healthy(container: Container) -> None:
    container.reload()
    state = container.attrs["State"]
    health = (state.get("Health") or {}).get("Status")
    assert state["Status"] == "running" and health == "healthy", (
        f"{container.name}: {state['Status']}, health {health}"
    )


def proxy_access_log(container: Container, since: float = 0.0) -> list[dict[str, Any]]:
    """The proxy's JSON access log lines (its error log lines are not JSON), those shipped
    since a Unix time if given. nginx writes them in batches, within a second."""
    logs = container.logs(stdout=True, stderr=False, **({"since": since} if since else {}))
    entries = []
    for line in logs.decode(errors="replace").splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            entries.append(json.loads(line))
    return entries


def proxied_requests(proxy: Container, api: Container, since: float = 0.0) -> int:
    """Requests the proxy's access log says API container `api` answered (the last upstream
    attempt went to its address) since a Unix time."""
    api.reload()
    (network,) = api.attrs["NetworkSettings"]["Networks"].values()
    address = f"{network['IPAddress']}:{contract.API_PORT}"
    return sum(
        1
        for entry in proxy_access_log(proxy, since)
        if str(entry.get("upstream", "")).split(", ")[-1] == address
        and str(entry.get("upstream_status", "")).split(", ")[-1] == "200"
    )


# --- answers ---------------------------------------------------------------------------------


def assert_security_headers(headers: dict[str, str], what: str) -> None:
    lowered = {key.lower(): value for key, value in headers.items()}
    for name, value in SECURITY_HEADERS.items():
        assert lowered.get(name) == value, f"{what}: {name} is {lowered.get(name)!r}"
    assert "frame-ancestors 'none'" in lowered.get("content-security-policy", ""), what


def assert_proxy_error(status: int, headers: dict[str, str], body: bytes, what: str) -> None:
    """An error the proxy answered itself: JSON naming the status, with security headers."""
    lowered = {key.lower(): value for key, value in headers.items()}
    content_type = lowered.get("content-type", "")
    assert content_type.startswith("application/json"), f"{what}: {content_type} {body[:200]!r}"
    document = json.loads(body)
    assert document.get("status") == status and document.get("message"), f"{what}: {document}"
    assert_security_headers(headers, what)


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes
    # Bytes after the first response (a second response would be smuggling).
    extra: bytes = b""
    # The server closed the connection after the response.
    closed: bool = False


def read_response(sock: socket.socket, buffer: bytes = b"") -> tuple[RawResponse, bytes]:
    """One response from `sock` (Content-Length framed, as every answer here is); returns it
    and the bytes read past it."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a complete response: {buffer[:200]!r}")
        buffer += chunk
    head, _, rest = buffer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return RawResponse(int(status_line.split(" ")[1]), headers, rest[:length]), rest[length:]


def exchange(endpoint: Endpoint, request: bytes, *, drain: float = 0.0) -> RawResponse:
    """Send raw bytes to the proxy and read the first response; with `drain`, then wait that
    long for anything more and for the server to close the connection."""
    with connect(endpoint) as sock:
        # The server may answer and close before reading everything sent (an oversized body).
        with contextlib.suppress(OSError):
            sock.sendall(request)
        response, extra = read_response(sock)
        if drain:
            sock.settimeout(drain)
            with contextlib.suppress(TimeoutError):
                while True:
                    try:
                        chunk = sock.recv(65536)
                    except ConnectionResetError:
                        chunk = b""
                    if not chunk:
                        response.closed = True
                        break
                    extra += chunk
        response.extra = extra
        return response


def get(path: str, host: str = "127.0.0.1", extra_headers: str = "") -> bytes:
    """A raw GET request that asks the server to close the connection after it."""
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra_headers}Connection: close\r\n\r\n"
    ).encode()


# --- a steady stream of requests -------------------------------------------------------------


@dataclass
class Outcome:
    started: float
    seconds: float
    result: int | str  # a status code, or the error
    content_type: str = ""


@dataclass
class RequestStream:
    """GET `url` in a loop from `clients` threads (one keep-alive session each), recording
    every outcome, while the `with` block runs."""

    url: str
    clients: int = 2
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def _run(self) -> None:
        with requests.Session() as session:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    response = session.get(self.url, timeout=REQUEST_TIMEOUT)
                    result: int | str = response.status_code
                    content_type = response.headers.get("Content-Type", "")
                except requests.RequestException as error:
                    result, content_type = repr(error), ""
                took = time.monotonic() - started
                self.outcomes.append(Outcome(started, took, result, content_type))
                time.sleep(0.01)

    @contextlib.contextmanager
    def running(self) -> Iterator["RequestStream"]:
        threads = [threading.Thread(target=self._run, daemon=True) for _ in range(self.clients)]
        for thread in threads:
            thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            for thread in threads:
                thread.join(timeout=REQUEST_TIMEOUT + 5)

    def served_since(self, moment: float) -> int:
        return sum(1 for o in list(self.outcomes) if o.started >= moment and o.result == 200)

    @property
    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.result != 200]
