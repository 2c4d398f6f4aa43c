"""The proxy behind a load balancer (LOAD_BALANCER_ADDRESSES): X-Forwarded-For and -Proto are
believed from the balancer's address alone. The client's address they give is the one rate
limited, logged and passed to the API, and the scheme the one the API is told; from any other peer
the same headers are overwritten.

Requests are sent from inside the proxy's network namespace (nsenter): to 127.0.0.1 they come
from 127.0.0.1, the balancer here; to the container's own address on its network they come from
that address, a client that is not one."""

import json
import subprocess
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from docker.models.containers import Container

import contract
from tests.images.stack import Running, Stack, wait_for

pytestmark = pytest.mark.engine

BALANCER = "127.0.0.1"
# Documentation addresses (RFC 5737): the clients the balancer says it forwards.
CLIENT_A = "192.0.2.10"
CLIENT_B = "198.51.100.20"
# The proxy's access log reaches `docker logs` within 1 s (buffer flush=1s).
LOG_TIMEOUT = 10.0


@dataclass(frozen=True)
class Sent:
    """One request: the client address it claims (X-Forwarded-For) and its request id."""

    claims: str
    request_id: str


# A stand-in API that answers every GET with the X-Forwarded-* headers it received, as JSON.
ECHO_API = """
import http.server, json
class Echo(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({k: v for k, v in self.headers.items() if k.startswith("X-Forwarded-")})
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())
http.server.ThreadingHTTPServer(("", 8000), Echo).serve_forever()
"""


def serve_behind_balancer(stack: Stack, burst: int = 1, **api: Any) -> Running:
    """An API (`api`: Docker's create options, e.g. a command of its own) and a proxy that
    believes BALANCER, with a rate limit of 1 request per second and a burst of `burst`: a
    client's request within a second beyond 1 + burst is answered 429."""
    network = stack.create_network()
    # Whom gunicorn believes X-Forwarded-* from, as in the stack: the proxy's network.
    subnet = network.attrs["IPAM"]["Config"][0]["Subnet"]
    api_container = stack.start_api(environment={"FORWARDED_ALLOW_IPS": subnet}, **api)
    proxy = stack.start_proxy(
        {
            "API_UPSTREAM": f"{contract.API_ALIAS}:{contract.API_PORT}",
            "PUBLIC_HOST": f"127.0.0.1:{contract.PROXY_HTTP_PORT}",
            "RATE_LIMIT_RPS": "1",
            "RATE_LIMIT_BURST": str(burst),
            "LOAD_BALANCER_ADDRESSES": BALANCER,
        }
    )
    return Running(stack, api_container, proxy).serving("a stack behind a load balancer")


@pytest.fixture
def behind_balancer(stack: Stack) -> Running:
    return serve_behind_balancer(stack)


def own_address(container: Container) -> str:
    container.reload()
    [network] = container.attrs["NetworkSettings"]["Networks"].values()
    return str(network["IPAddress"])


def curl_inside(container: Container, *arguments: str) -> str:
    """curl run in the container's network namespace: its output."""
    pid = container.attrs["State"]["Pid"]
    command = ["nsenter", f"--target={pid}", "--net", "curl", "--silent", "--show-error"]
    result = subprocess.run(
        [*command, "--max-time", "5", *arguments],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def send_at_once(proxy: Container, address: str, claims: list[str]) -> tuple[list[int], list[Sent]]:
    """GET / to the proxy at address, one request per claimed client, in one curl run (well
    within a second): their statuses, and what was sent."""
    sent = [Sent(claim, uuid.uuid4().hex) for claim in claims]
    arguments: list[str] = []
    for entry in sent:
        arguments += ["--next"] if arguments else []
        arguments += ["-o", "/dev/null", "-w", "%{http_code}\\n"]
        arguments += ["-H", f"X-Forwarded-For: {entry.claims}", "-H", "X-Forwarded-Proto: https"]
        arguments += ["-H", f"X-Request-ID: {entry.request_id}"]
        arguments.append(f"http://{address}:{contract.PROXY_HTTP_PORT}/")
    statuses = [int(line) for line in curl_inside(proxy, *arguments).split()]
    return statuses, sent


def forwarded_to_api(proxy: Container, address: str, claims: str) -> dict[str, str]:
    """The X-Forwarded-* headers the API gets for a request to the proxy at address that says it
    is from `claims` and came over HTTPS."""
    echoed = curl_inside(
        proxy,
        "-H",
        f"X-Forwarded-For: {claims}",
        "-H",
        "X-Forwarded-Proto: https",
        f"http://{address}:{contract.PROXY_HTTP_PORT}/",
    )
    return dict(json.loads(echoed))


def logged(
    container: Container, sent: list[Sent], client: Callable[[str], str | None]
) -> list[str]:
    """For each request sent, the client that the container's access log gives it: `client`
    reads it from a log line (None: not that request's line)."""

    def find() -> list[str]:
        lines = container.logs().decode().splitlines()
        found = {}
        for line in lines:
            for entry in sent:
                if entry.request_id in line:
                    found[entry.request_id] = client(line) or ""
        return [found.get(entry.request_id, "") for entry in sent]

    return wait_for(
        find,
        all,
        timeout=LOG_TIMEOUT,
        what=f"every request in the access log of {container.name}",
    )


def proxy_client(line: str) -> str | None:
    """The client of a line of the proxy's access log (JSON)."""
    return str(json.loads(line)["client"]) if line.startswith("{") else None


def api_forwarded_for(line: str) -> str | None:
    """The X-Forwarded-For of a line of gunicorn's access log, which begins with it."""
    return line.split(" via ", 1)[0] if " via " in line else None


def test_a_balancers_forwarded_client_is_believed(behind_balancer: Running) -> None:
    proxy = behind_balancer.proxy
    statuses, sent = send_at_once(proxy, BALANCER, [CLIENT_A, CLIENT_B, CLIENT_A, CLIENT_A])
    # A bucket per client the balancer names: B's request is not counted against A, whose
    # third is limited.
    assert statuses == [200, 200, 200, 429]
    assert logged(proxy, sent, proxy_client) == [CLIENT_A, CLIENT_B, CLIENT_A, CLIENT_A]
    reached_api = logged(behind_balancer.api, sent[:3], api_forwarded_for)
    assert reached_api == [CLIENT_A, CLIENT_B, CLIENT_A]


def test_anyone_elses_forwarded_client_is_overwritten(behind_balancer: Running) -> None:
    proxy = behind_balancer.proxy
    address = own_address(proxy)
    statuses, sent = send_at_once(proxy, address, [CLIENT_A, CLIENT_B, CLIENT_A])
    # One bucket, the peer's own address, whatever it claims.
    assert statuses == [200, 200, 429]
    assert logged(proxy, sent, proxy_client) == [address, address, address]
    assert logged(behind_balancer.api, sent[:2], api_forwarded_for) == [address, address]


def test_a_rate_limit_with_no_burst(stack: Stack) -> None:
    """A burst of 0 (nginx takes no `burst=0`): the proxy starts, and a client's second
    request within a second is limited."""
    running = serve_behind_balancer(stack, burst=0)
    statuses, _ = send_at_once(running.proxy, BALANCER, [CLIENT_A, CLIENT_A, CLIENT_B])
    assert statuses == [200, 429, 200]


def test_the_scheme_is_a_balancers_alone(stack: Stack) -> None:
    """The API is told https for a request the balancer says came over HTTPS (gunicorn then
    sets wsgi.url_scheme: request.scheme, url_for(_external=True)), and the scheme of the
    connection to the proxy, http, for anyone else saying so."""
    running = serve_behind_balancer(
        stack, command=["python", "-c", ECHO_API], healthcheck={"test": ["NONE"]}
    )
    proxy = running.proxy
    from_balancer = forwarded_to_api(proxy, BALANCER, CLIENT_A)
    assert from_balancer == {"X-Forwarded-For": CLIENT_A, "X-Forwarded-Proto": "https"}
    address = own_address(proxy)
    from_anyone_else = forwarded_to_api(proxy, address, CLIENT_A)
    assert from_anyone_else == {"X-Forwarded-For": address, "X-Forwarded-Proto": "http"}
