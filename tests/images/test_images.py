"""Both images, run the way the Pulumi stack runs them: a private network, the API reachable only
through the proxy, non-root and read-only containers."""

import json
import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import docker
import pytest
import requests
from docker.models.containers import Container

import contract
from tests.images.stack import (
    CONTAINER_TMP,
    REPO_ROOT,
    REQUEST_TIMEOUT,
    Images,
    Running,
    Stack,
    build_image,
    get,
    remove_image,
    wait_for,
)

pytestmark = pytest.mark.engine

HELLO = {"message": "Hello, Being!"}
HEALTHY_TIMEOUT = 60.0
# A new API container is served within this long (it answers once started; nginx asks the
# alias again every second).
FOLLOW_TIMEOUT = 20.0
ROLES = ["api", "proxy"]
USERS = {"api": contract.API_USER, "proxy": contract.PROXY_USER}


def container_of(running: Running, role: str) -> Container:
    return {"api": running.api, "proxy": running.proxy}[role]


def wait_for_access_log(api: Container, request_id: str) -> None:
    """Until the API's access log has the request (written after the response, then shipped)."""
    wait_for(
        lambda: api.logs().decode(),
        lambda logs: f"rid={request_id} " in logs,
        timeout=10,
        what=f"an access log line with rid={request_id} from {api.name}",
    )


def test_root_through_proxy_returns_hello(running: Running) -> None:
    response = get(f"{running.url}/")

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == HELLO


def test_server_header_names_no_version_and_no_backend(running: Running) -> None:
    server = get(f"{running.url}/").headers.get("Server", "")

    assert "/" not in server, f"Server header shows a version: {server!r}"
    assert "gunicorn" not in server.lower()


def test_healthz_answers_json(running: Running) -> None:
    response = get(f"{running.url}{contract.HEALTHZ_PATH}")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.parametrize(
    ("header", "value"), [("X-Content-Type-Options", "nosniff"), ("X-Frame-Options", "DENY")]
)
def test_security_headers_are_set(running: Running, header: str, value: str) -> None:
    assert get(f"{running.url}/").headers.get(header) == value


def test_request_id_is_echoed_and_reaches_the_api(running: Running) -> None:
    request_id = f"test-{uuid.uuid4().hex}"

    response = get(f"{running.url}/", headers={"X-Request-ID": request_id})

    assert response.headers.get("X-Request-ID") == request_id
    wait_for_access_log(running.api, request_id)


def test_proxy_makes_a_request_id_when_none_is_sent(running: Running) -> None:
    request_id = get(f"{running.url}/").headers.get("X-Request-ID", "")

    assert re.fullmatch("[0-9a-f]{32}", request_id), request_id


def test_api_port_is_not_published(running: Running) -> None:
    running.api.reload()
    ports = running.api.attrs["NetworkSettings"]["Ports"]

    assert ports, "the image should EXPOSE the API port"
    assert all(not bindings for bindings in ports.values()), ports
    assert not running.api.attrs["HostConfig"]["PortBindings"]


def test_proxy_port_is_published_on_loopback_only(running: Running) -> None:
    bindings = running.proxy.attrs["NetworkSettings"]["Ports"]
    port = f"{contract.PROXY_HTTP_PORT}/tcp"

    assert [binding["HostIp"] for binding in bindings[port]] == ["127.0.0.1"]


@pytest.mark.parametrize("role", ROLES)
def test_container_runs_as_non_root(running: Running, role: str) -> None:
    container = container_of(running, role)

    assert container.attrs["Config"]["User"] == USERS[role]
    result = container.exec_run(["id", "-u"])
    assert result.exit_code == 0, result.output
    assert int(result.output) == int(USERS[role].split(":")[0]) != 0


@pytest.mark.parametrize("role", ROLES)
def test_root_filesystem_is_read_only(running: Running, role: str) -> None:
    container = container_of(running, role)

    assert container.attrs["HostConfig"]["ReadonlyRootfs"] is True
    assert container.exec_run(["touch", "/x"]).exit_code != 0
    # Only the tmpfs is writable.
    assert container.exec_run(["touch", f"{CONTAINER_TMP}/x"]).exit_code == 0


def test_both_containers_become_healthy(running: Running) -> None:
    def statuses() -> dict[str, str]:
        for container in (running.api, running.proxy):
            container.reload()
        return {
            role: container_of(running, role).attrs["State"]["Health"]["Status"] for role in ROLES
        }

    wait_for(
        statuses,
        lambda seen: set(seen.values()) == {"healthy"},
        timeout=HEALTHY_TIMEOUT,
        what="both containers healthy",
        interval=1.0,
    )


def test_proxy_follows_the_api_alias_as_containers_come_and_go(running: Running) -> None:
    """As a deploy replaces an API container: the new one starts beside the old one and is
    served once it answers; the old one goes; the proxy is never restarted or reloaded."""
    stack, proxy, old_api = running.stack, running.proxy, running.api
    started_at = proxy.attrs["State"]["StartedAt"]
    get(f"{running.url}/")  # a kept-alive upstream connection to the old container

    new_api = stack.start_api("api-new", environment={"GUNICORN_ACCESS_LOG": "on"})
    request_ids: list[str] = []

    def served_by_new() -> bool:
        request_ids.append(f"test-{uuid.uuid4().hex}")
        assert get(f"{running.url}/", headers={"X-Request-ID": request_ids[-1]}).ok
        return any(f"rid={rid} " in new_api.logs().decode() for rid in request_ids)

    wait_for(served_by_new, bool, timeout=FOLLOW_TIMEOUT, what="a request served by the new API")
    stack.remove(old_api)
    for _ in range(20):
        response = get(f"{running.url}/")
        assert response.status_code == 200, response.text
        assert response.json() == HELLO
    proxy.reload()
    assert proxy.status == "running"
    assert proxy.attrs["State"]["StartedAt"] == started_at, "the proxy was restarted"
    assert "reconfiguring" not in proxy.logs().decode(), "the proxy was reloaded"


def test_proxy_is_healthy_while_the_api_name_resolves_to_nothing(stack: Stack) -> None:
    """The proxy's health never waits for the API: with no API container at all it starts,
    reports healthy, and answers JSON 502s until one appears."""
    stack.create_network()
    proxy = stack.start_proxy()

    def health() -> str:
        proxy.reload()
        return str(proxy.attrs["State"]["Health"]["Status"])

    wait_for(
        health, lambda seen: seen == "healthy", timeout=HEALTHY_TIMEOUT, what="a healthy proxy"
    )
    url = Running(stack, proxy, proxy).url
    response = get(f"{url}/")
    assert response.status_code == 502
    assert response.headers["Content-Type"] == "application/json"
    # A POST that found no instance was never sent: it is tried once more (@retry).
    posted = requests.post(f"{url}/", json={}, timeout=REQUEST_TIMEOUT)
    assert posted.status_code == 502
    request_id = posted.headers["X-Request-ID"]
    wait_for(
        lambda: proxy.logs(stderr=False).decode(),
        lambda log: f'"{request_id}"' in log,
        timeout=10,
        what=f"the proxy's access log line of request {request_id}",
    )
    [line] = [line for line in proxy.logs(stderr=False).decode().splitlines() if request_id in line]
    assert json.loads(line)["upstream"] == "api_containers : api_containers", line
    stack.start_api()
    wait_for(
        lambda: get(f"{url}/"),
        lambda response: response.status_code == 200,
        timeout=FOLLOW_TIMEOUT,
        what="GET / served once an API container appears",
    )


def upstream_sockets(proxy: Container) -> dict[str, int]:
    """The proxy's TCP sockets towards the API port, by state (its /proc/net/tcp)."""
    states = {"01": "established", "06": "time_wait"}
    counts = dict.fromkeys(states.values(), 0)
    table = proxy.exec_run(["cat", "/proc/net/tcp"]).output.decode().splitlines()[1:]
    for line in table:
        fields = line.split()
        remote_port = int(fields[2].split(":")[1], 16)
        if remote_port == contract.API_PORT and fields[3] in states:
            counts[states[fields[3]]] += 1
    return counts


def test_proxy_keeps_upstream_connections_alive(running: Running) -> None:
    for _ in range(50):
        assert get(f"{running.url}/").status_code == 200

    sockets = upstream_sockets(running.proxy)
    # One kept-alive connection per nginx worker at most, reused by every request: no
    # connection per request, so no closed ones waiting in TIME_WAIT either.
    assert 1 <= sockets["established"] <= 4, sockets
    assert sockets["time_wait"] == 0, sockets


def test_proxy_answers_json_error_quickly_when_api_is_down(running: Running) -> None:
    running.stack.remove(running.api)

    started = time.monotonic()
    response = get(f"{running.url}/")
    elapsed = time.monotonic() - started

    assert response.status_code in {502, 503, 504}
    assert response.headers["Content-Type"] == "application/json"
    assert response.json()["message"]
    assert response.headers.get("X-Content-Type-Options") == "nosniff"
    assert elapsed < REQUEST_TIMEOUT
    # The proxy's own liveness does not depend on the API.
    assert get(f"{running.url}{contract.HEALTHZ_PATH}").status_code == 200


def address_of(stack: Stack, container: Container) -> str:
    return str(container.attrs["NetworkSettings"]["Networks"][stack.name]["IPAddress"])


def proxy_of_address(stack: Stack, api: Container) -> tuple[Container, str]:
    """A proxy in front of the API container's address, not the alias (served from its start,
    with no lookup to wait for), answering its /healthz; and its URL."""
    proxy = stack.start_proxy({"API_UPSTREAM": f"{address_of(stack, api)}:{contract.API_PORT}"})
    url = Running(stack, api, proxy).url
    wait_for(
        lambda: get(f"{url}{contract.HEALTHZ_PATH}"),
        lambda response: response.status_code == 200,
        timeout=HEALTHY_TIMEOUT,
        what="the proxy's /healthz",
    )
    return proxy, url


# An API instance that goes away mid-request, every time: it reads each request and closes the
# connection unanswered.
DROPPING_API = """
import socket
server = socket.create_server(("", 8000))
while True:
    connection, _ = server.accept()
    print("dropped", *connection.recv(65536).decode().split(" ")[:2], flush=True)
    connection.close()
"""


def test_the_proxy_never_sends_a_request_an_instance_received_again(stack: Stack) -> None:
    """Only a request no instance received is sent once more (@retry in nginx.conf): one that
    reached an instance and got no answer gets a JSON 502, whatever its method."""
    stack.create_network()
    api = stack.start_api(command=["python", "-c", DROPPING_API], healthcheck={"test": ["NONE"]})
    _, url = proxy_of_address(stack, api)

    answers = [get(f"{url}/"), requests.post(f"{url}/", json={}, timeout=REQUEST_TIMEOUT)]

    assert [(r.status_code, r.json()["status"]) for r in answers] == [(502, 502)] * 2
    # A last request: once it is in the stand-in's log, all it received before is too.
    get(f"{url}/last")
    seen = wait_for(
        lambda: api.logs().decode().splitlines(),
        lambda lines: "dropped GET /last" in lines,
        timeout=10,
        what="the stand-in API's log of what it received",
    )
    assert seen == ["dropped GET /", "dropped POST /", "dropped GET /last"]


# How connection attempts to the API's port from another host fail: as at a container that has
# just been removed (no answer: the proxy's 250 ms connect timeout) or one that is stopping
# (refused). Rules in the API container's own network namespace; its health check, over
# loopback, is not counted.
CONNECTIONS_FAIL = {
    "timed-out": ["-j", "DROP"],
    "refused": ["-j", "REJECT", "--reject-with", "tcp-reset"],
}


def fail_connections(api: Container, failure: str, every: int) -> None:
    """CONNECTIONS_FAIL[failure] for the first of every `every` new connections to the API."""
    nth_syn = [
        *("iptables", "-A", "INPUT", "!", "-i", "lo", "-p", "tcp", "--syn"),
        *("--dport", str(contract.API_PORT)),
        *("-m", "statistic", "--mode", "nth", "--every", str(every), "--packet", "0"),
    ]
    netns = ["nsenter", f"--target={api.attrs['State']['Pid']}", "--net"]
    subprocess.run([*netns, *nth_syn, *CONNECTIONS_FAIL[failure]], check=True)


def listening_api_behind_its_proxy(stack: Stack) -> tuple[Container, Container, str]:
    """An API container, listening and asked by no request yet (the proxy has no kept-alive
    connection to it to reuse), its proxy, and the proxy's URL. The proxy has the container's
    address: a single, fixed upstream server, as the API's name is when one address is left."""
    stack.create_network()
    api = stack.start_api()
    proxy, url = proxy_of_address(stack, api)
    wait_for(
        lambda: api.logs().decode(),
        lambda logs: "Listening at" in logs,
        timeout=HEALTHY_TIMEOUT,
        what="the API listening",
    )
    return api, proxy, url


def proxy_log_line(proxy: Container, request_id: str) -> dict[str, Any]:
    log = wait_for(
        lambda: proxy.logs(stderr=False).decode(),
        lambda logs: f'"{request_id}"' in logs,
        timeout=10,
        what=f"the proxy's access log line of request {request_id}",
    )
    [line] = [json.loads(line) for line in log.splitlines() if f'"{request_id}"' in line]
    return dict(line)


@pytest.mark.parametrize(
    ("method", "failure"), [("GET", "timed-out"), ("POST", "timed-out"), ("GET", "refused")]
)
def test_a_request_whose_last_connection_attempt_failed_is_sent_once_more(
    stack: Stack, method: str, failure: str
) -> None:
    """The API's one address fails the connection (nginx's last try: nothing was sent), as a
    one-replica deploy's old container can just after it is removed: the proxy sends the
    request once more (@retry), and the instance, accepting again, answers it."""
    api, proxy, url = listening_api_behind_its_proxy(stack)
    fail_connections(api, failure, every=2)
    request_id = f"test-{uuid.uuid4().hex}"

    response = requests.request(
        method, f"{url}/", headers={"X-Request-ID": request_id}, timeout=REQUEST_TIMEOUT
    )

    # The API's own answer: GET / says hello, POST / is not one of its routes.
    assert (response.status_code, response.headers["X-Request-ID"]) == (
        {"GET": 200, "POST": 405}[method],
        request_id,
    ), response.text
    wait_for_access_log(api, request_id)
    assert api.logs().decode().count(f"rid={request_id} ") == 1, "received more than once"
    # One attempt in `location /`, one in @retry.
    upstream = f"{address_of(stack, api)}:{contract.API_PORT}"
    assert proxy_log_line(proxy, request_id)["upstream"] == f"{upstream} : {upstream}"


def test_a_request_is_sent_once_more_at_most(stack: Stack) -> None:
    """Its second attempt's connection times out too: a JSON 502, and no third attempt."""
    api, proxy, url = listening_api_behind_its_proxy(stack)
    fail_connections(api, "timed-out", every=1)
    request_id = f"test-{uuid.uuid4().hex}"

    response = get(f"{url}/", headers={"X-Request-ID": request_id})

    assert (response.status_code, response.json()["status"]) == (502, 502), response.text
    upstream = f"{address_of(stack, api)}:{contract.API_PORT}"
    assert proxy_log_line(proxy, request_id)["upstream"] == f"{upstream} : {upstream}"


NOT_HOST_PORT = "is not host:port"


@pytest.mark.parametrize(
    ("environment", "message"),
    [
        ({}, "API_UPSTREAM is not set"),
        ({"API_UPSTREAM": contract.API_ALIAS}, NOT_HOST_PORT),
        ({"API_UPSTREAM": f"{contract.API_ALIAS}:{contract.API_PORT};"}, NOT_HOST_PORT),
        ({"API_UPSTREAM": f"{contract.API_ALIAS}:65536"}, NOT_HOST_PORT),
        ({"API_UPSTREAM": f"{contract.API_ALIAS}:0"}, NOT_HOST_PORT),
        ({"API_UPSTREAM": f"10.0.0.11:{contract.API_PORT},{contract.API_ALIAS}"}, NOT_HOST_PORT),
        ({"API_UPSTREAM": ","}, "names no host:port"),
        (
            {"API_UPSTREAM": f"{contract.API_ALIAS}:{contract.API_PORT}", "PROCESS_LIMIT": "lots"},
            "PROCESS_LIMIT='lots' is not a whole number",
        ),
    ],
    ids=[
        "unset",
        "no-port",
        "trailing-junk",
        "port-too-high",
        "port-zero",
        "one-bad",
        "empty",
        "process-limit",
    ],
)
def test_proxy_refuses_to_start_with_bad_api_upstream(
    stack: Stack, environment: dict[str, str], message: str
) -> None:
    proxy = stack.start_proxy(environment=environment)

    def status() -> str:
        proxy.reload()
        return str(proxy.status)

    wait_for(status, lambda seen: seen == "exited", timeout=10, what="the proxy to exit")
    logs = proxy.logs().decode()
    assert proxy.attrs["State"]["ExitCode"] != 0, logs
    assert message in logs


def test_code_change_reuses_the_dependency_layer(
    docker_client: docker.DockerClient,
    base_images: dict[str, str],
    images: Images,  # built first: its layers are the cache this build should hit
    tmp_path: Path,
) -> None:
    context = tmp_path / contract.API_CONTEXT
    shutil.copytree(REPO_ROOT / contract.API_CONTEXT, context)
    with (context / "rest_api" / "routes.py").open("a") as routes:
        routes.write(f"# a code-only change {uuid.uuid4().hex}\n")

    build = build_image(docker_client, context, base_images["api"])
    try:
        [pip_step] = [step for step in build.steps if "pip install" in step]
        [code_step] = [step for step in build.steps if step.startswith("COPY rest_api")]
        assert build.steps[pip_step], "the dependency layer was rebuilt for a code-only change"
        assert not build.steps[code_step], "the changed code was not copied again"
    finally:
        remove_image(docker_client, build.tag)
