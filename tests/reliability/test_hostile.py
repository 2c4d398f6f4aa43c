"""Hostile input against the deployed proxy: oversized and malformed requests, slow clients,
request smuggling, path tricks, spoofed hosts, fuzzing, and the rate limit. Raw requests go
through sockets (an HTTP library would fix them up); none of it may restart a container."""

import json
import select
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker
import pytest
import requests

import contract
from tests.conftest import TEST_LABEL
from tests.engine_stacks import PROJECT, Deployments, EngineStack, connect, new_stack_name, port_of
from tests.reliability.helpers import (
    REQUEST_TIMEOUT,
    RawResponse,
    api_containers,
    assert_proxy_error,
    assert_security_headers,
    eventually,
    exchange,
    get,
    lifetimes,
    stack_containers,
)

pytestmark = pytest.mark.engine

# nginx's limits (proxy/nginx.conf): 8 KiB per request line or header line, 4 such buffers,
# 1 MiB of body, 10 s to send the request headers.
TOO_LONG = 9 * 1024
HEADER_TIMEOUT = 10
SLOW_CLIENTS = 200
# Markers of files that must never be served: /etc/passwd, the app's source, nginx's config.
SECRETS = [b"root:x:0:0", b"import ", b"worker_processes", b"gunicorn"]


@pytest.fixture(scope="module", autouse=True)
def lifetimes_before(stack: EngineStack, docker_client: docker.DockerClient) -> dict:
    """Each container's id, restart count and start time before any hostile input."""
    return lifetimes(stack_containers(docker_client, stack))


@pytest.fixture(scope="module")
def stack(deployments: Deployments) -> EngineStack:
    """The dev config with gunicorn's own access log on (off by default): the API's record of
    what reached it is the witness that a refused or smuggled request never did."""
    return deployments.up(new_stack_name(), rateLimitPerSecond="0", apiAccessLog="true")


def api_logs(client: docker.DockerClient, stack: EngineStack) -> str:
    """Every API container's log, once a control request sent now shows in it: the log is
    on and has caught up with everything sent before."""
    control = f"/control-{uuid.uuid4().hex}"
    assert requests.get(f"{stack.url}{control}", timeout=REQUEST_TIMEOUT).status_code == 404

    def logs() -> str:
        text = "".join(c.logs().decode(errors="replace") for c in api_containers(client, stack))
        assert control in text, "the control request is not in the API's access log yet"
        return text

    return eventually(logs, 10)


def test_oversized_request_line_is_414(stack: EngineStack) -> None:
    port = port_of(stack)
    response = exchange(port, get("/" + "a" * TOO_LONG))
    assert response.status == 414, response
    assert_proxy_error(414, response.headers, response.body, "oversized request line")


@pytest.mark.parametrize(
    "headers",
    [
        f"X-Big: {'a' * TOO_LONG}\r\n",
        f"Cookie: session={'b' * TOO_LONG}\r\n",
        "".join(f"X-Part-{n}: {'c' * 7000}\r\n" for n in range(6)),
    ],
    ids=["one-long-header", "long-cookie", "too-many-large-headers"],
)
def test_oversized_headers_are_431(stack: EngineStack, headers: str) -> None:
    port = port_of(stack)
    response = exchange(port, get("/", extra_headers=headers))
    assert response.status == 431, response
    assert_proxy_error(431, response.headers, response.body, "oversized headers")


def chunked(size: int, chunk: int = 64 * 1024) -> bytes:
    body = b"".join(b"%x\r\n%s\r\n" % (chunk, b"x" * chunk) for _ in range(size // chunk))
    return body + b"0\r\n\r\n"


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2097152\r\n\r\n" + b"x" * 65536,
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        + chunked(20 * 64 * 1024),
    ],
    ids=["declared-length", "chunked"],
)
def test_oversized_body_is_413(stack: EngineStack, request_bytes: bytes) -> None:
    response = exchange(port_of(stack), request_bytes)
    assert response.status == 413, response
    assert_proxy_error(413, response.headers, response.body, "oversized body")


@pytest.mark.parametrize("method", ["FOO", "PROPFIND", "BREW", "TRACE"])
def test_unknown_methods_are_refused_by_the_proxy_alone(
    stack: EngineStack, docker_client: docker.DockerClient, method: str
) -> None:
    port = port_of(stack)
    for path in ["/", "/no-such-path", "/swagger"]:
        request = f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        response = exchange(port, request.encode())
        what = f"{method} {path}"
        assert response.status == 405, f"{what}: {response}"
        assert_proxy_error(405, response.headers, response.body, what)
        assert "GET" in response.headers.get("allow", ""), f"{what}: no Allow header"
    assert f'"{method} ' not in api_logs(docker_client, stack), f"{method} reached the API"
    # A method the API knows but the resource doesn't allow: 405 as well, as JSON.
    response = exchange(port, b"DELETE / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert response.status == 405 and json.loads(response.body)["message"], response


def has_ended(sock: socket.socket) -> bool:
    """Whether the server ended this slow request: it closed, reset or answered."""
    try:
        sock.sendall(b"X-Slow: 1\r\n")  # one more header line, never the blank line
        readable, _, _ = select.select([sock], [], [], 0)
        if readable:
            sock.settimeout(0)
            try:
                sock.recv(4096)  # an answer, or b"": closed
            except (ssl.SSLWantReadError, BlockingIOError):
                return False  # TLS housekeeping only (TLS 1.3 sends session tickets)
            finally:
                sock.settimeout(5)
            return True
    except OSError:
        return True
    return False


def test_slow_clients_time_out_without_starving_others(stack: EngineStack) -> None:
    port = port_of(stack)
    slow = [connect(port, timeout=5) for _ in range(SLOW_CLIENTS)]
    try:
        opened = time.monotonic()
        for sock in slow:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: slow\r\n")
        ended: dict[int, float] = {}
        served = 0
        deadline = opened + HEADER_TIMEOUT * 3
        while len(ended) < len(slow) and time.monotonic() < deadline:
            for index, sock in enumerate(slow):
                if index not in ended and has_ended(sock):
                    ended[index] = time.monotonic() - opened
            started = time.monotonic()
            response = requests.get(f"{stack.url}/", timeout=REQUEST_TIMEOUT)
            took = time.monotonic() - started
            assert response.status_code == 200 and took < 3.0, f"HTTP {response}, {took:.1f}s"
            served += 1
            time.sleep(1.0)
        assert len(ended) == len(slow), f"{len(slow) - len(ended)} slow clients still connected"
        assert min(ended.values()) >= HEADER_TIMEOUT - 1, "slow clients cut before the timeout"
        assert served >= HEADER_TIMEOUT - 1, f"only {served} requests served meanwhile"
    finally:
        for sock in slow:
            sock.close()


def test_raw_response_reader_sees_one_response(stack: EngineStack) -> None:
    """The reader that the smuggling test relies on does see a second, pipelined response."""
    port = port_of(stack)
    pipelined = get("/healthz").replace(b"Connection: close\r\n", b"") + get("/")
    response: RawResponse = exchange(port, pipelined, drain=3.0)
    assert response.status == 200 and b"HTTP/1.1 200" in response.extra, response


# Headers and body of POSTs framed ambiguously or wrongly; a request to a unique path follows.
END = b"0\r\n\r\n"
SMUGGLING = {
    "content-length-and-chunked": (b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n", END),
    "chunked-and-content-length": (b"Transfer-Encoding: chunked\r\nContent-Length: 4\r\n", END),
    "two-content-lengths": (b"Content-Length: 0\r\nContent-Length: 5\r\n", END),
    "chunked-twice": (b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n", END),
    "chunked-then-identity": (b"Transfer-Encoding: chunked, identity\r\n", END),
    "unknown-coding": (b"Transfer-Encoding: xchunked\r\nContent-Length: 5\r\n", END),
    "space-before-colon": (b"Transfer-Encoding : chunked\r\nContent-Length: 5\r\n", END),
    "folded-header": (b"X-Folded: a\r\n Transfer-Encoding: chunked\r\n", END),
    "bad-chunk-size": (b"Transfer-Encoding: chunked\r\n", b"zz\r\n" + END),
}


@pytest.mark.parametrize(("headers", "body"), SMUGGLING.values(), ids=SMUGGLING.keys())
def test_request_smuggling_is_rejected(
    stack: EngineStack,
    docker_client: docker.DockerClient,
    headers: bytes,
    body: bytes,
    unique_name: str,
) -> None:
    smuggled = f"GET /smuggled-{unique_name} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    request = b"POST / HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n" + body + smuggled
    response = exchange(port_of(stack), request, drain=3.0)
    assert response.status in {400, 501}, response
    assert_proxy_error(response.status, response.headers, response.body, "smuggling attempt")
    assert response.closed, "the connection stayed open after a rejected request"
    assert b"HTTP/1." not in response.extra, f"a second response: {response.extra[:300]!r}"
    assert f"/smuggled-{unique_name}" not in api_logs(docker_client, stack)


TRAVERSALS = [
    "/../../etc/passwd",
    "/%2e%2e/%2e%2e/etc/passwd",
    "/..%2f..%2fetc%2fpasswd",
    "/.%2e/.%2e/etc/passwd",
    "//etc/passwd",
    "/etc/nginx/nginx.conf",
    "/_proxy_error",
    "/swagger/ui/static/../../../../etc/passwd",
    "/swagger/ui/static/..%2f..%2f..%2f..%2fapp/wsgi.py",
    "/swagger/ui/static/%2e%2e/%2e%2e/%2e%2e/%2e%2e/app/gunicorn.conf.py",
    "/swagger/ui/static/..%252f..%252f..%252fapp%252fwsgi.py",
    "/swagger/ui/static/..\\..\\..\\app\\wsgi.py",
    "/swagger/ui/static/%c0%ae%c0%ae/%c0%ae%c0%ae/app/wsgi.py",
]


def test_path_traversal_serves_no_file(stack: EngineStack) -> None:
    port = port_of(stack)
    # The API does serve files here, so the tricks below aim at a real file server.
    served = exchange(port, get("/swagger/ui/static/swagger-ui.css"))
    assert served.status == 200 and served.body, served
    for path in TRAVERSALS:
        response = exchange(port, get(path))
        assert response.status in {400, 404}, f"{path}: {response}"
        assert response.headers.get("content-type", "").startswith("application/json"), path
        leaked = [marker for marker in SECRETS if marker in response.body]
        assert not leaked, f"{path} served {leaked}: {response.body[:300]!r}"


def test_a_spoofed_host_changes_nothing(stack: EngineStack) -> None:
    port = port_of(stack)
    public = stack.url.split("://")[1]
    spoofs = [
        ("Host: evil.example", "{path}"),
        ("Host: evil.example:666", "{path}"),
        ("Host: localhost", "{path}"),
        (f"Host: {public}\r\nX-Forwarded-Host: evil.example", "{path}"),
        (f"Host: {public}\r\nX-Forwarded-Proto: https", "{path}"),
        ("Host: x", "http://evil.example{path}"),
    ]
    for path in ["/", "/swagger", "/swagger/ui/", "/no-such-path"]:
        baseline = exchange(port, get(path, host=public))
        assert baseline.status in {200, 404}, f"{path}: {baseline}"
        for headers, target in spoofs:
            request = f"GET {target.format(path=path)} HTTP/1.1\r\n{headers}\r\n"
            response = exchange(port, f"{request}Connection: close\r\n\r\n".encode())
            what = f"{path} with {headers!r} to {target.format(path=path)}"
            assert (response.status, response.body) == (baseline.status, baseline.body), what
    spec = json.loads(exchange(port, get("/swagger", host="evil.example")).body)
    assert spec["host"] == public, f"the spec names {spec['host']!r}, not {public!r}"


def test_fuzzing_the_api_through_the_proxy_finds_no_server_error(
    stack: EngineStack, tmp_path: Path
) -> None:
    """schemathesis, driven by the spec the app serves (its `host` says where the API is)."""
    report = tmp_path / "schemathesis.json"
    run = subprocess.run(
        [
            *[sys.executable, "-m", "schemathesis.cli", "run", f"{stack.url}/swagger"],
            *["--checks", "not_a_server_error", "--max-examples", "100"],
            *["--request-timeout", str(REQUEST_TIMEOUT), "--generation-database", "none"],
            *["--no-color", "--report", "json", "--report-json-path", str(report)],
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=tmp_path,  # its cache (.schemathesis/) stays out of the repository
    )
    output = run.stdout[-5000:] + run.stderr[-2000:]
    result = json.loads(report.read_text())
    assert run.returncode == 0 and not result["failures"] and not result["errors"], output
    assert result["operations"]["tested"] >= 1 and result["test_cases"]["generated"] >= 1, output


def test_security_headers_on_every_response(stack: EngineStack) -> None:
    port = port_of(stack)
    cases = {
        "API answer": get("/"),
        "proxy's health": get("/healthz"),
        "API spec": get("/swagger"),
        "API HTML page": get("/swagger/ui/"),
        "API 404": get("/no-such-path"),
        "proxy 404": get("/_proxy_error"),
        "API 405": b"DELETE / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "proxy 405": b"FOO / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "400": b"GET / HTTP/1.1\r\n\r\n",
        "413": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2097152\r\n\r\n",
        "414": get("/" + "a" * TOO_LONG),
        "431": get("/", extra_headers=f"X-Big: {'a' * TOO_LONG}\r\n"),
        "501": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n",
    }
    statuses = {}
    for what, request in cases.items():
        response = exchange(port, request)
        statuses[what] = response.status
        assert_security_headers(response.headers, f"{what} (HTTP {response.status})")
    assert len(set(statuses.values())) >= 8, f"fewer kinds of answer than meant: {statuses}"


@pytest.fixture(scope="module")
def rate_limited(deployments: Deployments) -> EngineStack:
    """A second stack whose proxy allows 5 requests per second per client (burst 10); its
    certificate names the proxy container too, for a client on the stack's network."""
    name = new_stack_name()
    proxy = f"{PROJECT}-{name}-proxy"
    return deployments.up(name, rateLimitPerSecond="5", tlsHostNames=f"localhost,127.0.0.1,{proxy}")


def test_rate_limit_answers_429_json_per_client_address(
    rate_limited: EngineStack, docker_client: docker.DockerClient
) -> None:
    url = f"{rate_limited.url}/"
    # 40 requests at once: the rate (5/s) and burst (10) let about 11 through, however slow
    # the API answers here.
    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(lambda _: requests.get(url, timeout=REQUEST_TIMEOUT), range(40)))
    statuses = [answer.status_code for answer in answers]
    assert set(statuses) == {200, 429}, statuses
    assert statuses.count(200) >= 10 and statuses.count(429) >= 10, statuses
    refused = next(answer for answer in answers if answer.status_code == 429)
    assert_proxy_error(429, dict(refused.headers), refused.content, "rate limited")

    # While this host keeps hammering (forged X-Forwarded-For buys it nothing), a client at
    # another address, on the stack's network, has its own allowance.
    hammered: list[tuple[float, int]] = []
    stop = threading.Event()

    def hammer() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                forged = {"X-Forwarded-For": f"10.0.{len(hammered) % 250}.1"}
                response = session.get(url, headers=forged, timeout=REQUEST_TIMEOUT)
                hammered.append((time.monotonic(), response.status_code))

    thread = threading.Thread(target=hammer, daemon=True)
    thread.start()
    proxy = f"https://{rate_limited.exports[contract.EXPORT_PROXY_CONTAINER]}"
    client = docker_client.containers.run(
        rate_limited.exports[contract.EXPORT_API_IMAGE],
        [
            "python3",
            "-c",
            "import ssl, sys, time, urllib.request\n"
            "tls = ssl.create_default_context(cadata=sys.argv[2])\n"
            "for _ in range(3):\n"
            "    answer = urllib.request.urlopen(sys.argv[1], timeout=10, context=tls)\n"
            "    print(answer.status, flush=True)\n"
            "    time.sleep(0.3)\n",
            f"{proxy}:{contract.PROXY_HTTPS_PORT}/",
            rate_limited.exports[contract.EXPORT_CA_CERTIFICATE],
        ],
        network=rate_limited.exports[contract.EXPORT_NETWORK],
        labels={TEST_LABEL: "1"},
        detach=True,
    )
    try:
        started = time.monotonic()
        exit_code = client.wait(timeout=60)["StatusCode"]
        ended = time.monotonic()
        output = client.logs().decode(errors="replace")
    finally:
        stop.set()
        thread.join(timeout=REQUEST_TIMEOUT + 5)
        client.remove(force=True)
    assert exit_code == 0 and output.split() == ["200"] * 3, output
    meanwhile = [status for moment, status in hammered if started <= moment <= ended]
    assert meanwhile.count(429) > len(meanwhile) / 2, f"the hammering host got {meanwhile}"


def test_no_container_restarted_through_all_of_it(
    stack: EngineStack, docker_client: docker.DockerClient, lifetimes_before: dict
) -> None:
    assert lifetimes(stack_containers(docker_client, stack)) == lifetimes_before
