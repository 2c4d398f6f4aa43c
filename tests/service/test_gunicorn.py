"""gunicorn as the image runs it: the project's gunicorn.conf.py, a real process and socket."""

import errno
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

import contract
from engine_harness.free_resources import free_port
from tests.service.replaced_app import ITEMS, service_with_replaced_app

pytestmark = pytest.mark.unit

SERVICE_DIR = Path(__file__).resolve().parents[2] / "service"
STARTUP_TIMEOUT = 20.0
REQUEST_TIMEOUT = 5.0


@dataclass(frozen=True)
class Gunicorn:
    process: subprocess.Popen[bytes]
    port: int
    stdout: Path
    stderr: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return f"stdout:\n{self.stdout.read_text()}\nstderr:\n{self.stderr.read_text()}"


def image_command() -> list[str]:
    """gunicorn as the image starts it: the CMD of service/Dockerfile, with this interpreter."""
    [cmd] = [
        line.removeprefix("CMD ")
        for line in (SERVICE_DIR / "Dockerfile").read_text().splitlines()
        if line.startswith("CMD ")
    ]
    program, *arguments = json.loads(cmd)
    return [sys.executable, "-m", program, *arguments]


GUNICORN = image_command()


def service_env(port: int) -> dict[str, str]:
    """The environment the program gives an API container, but for its tuning."""
    return {
        **os.environ,
        "PORT": str(port),
        "API_HEALTH_PATH": contract.API_HEALTH_PATH,
        "PYTHONUNBUFFERED": "1",
    }


def wait_until_serving(server: Gunicorn) -> None:
    """Until the health path answers 200, the process dies or the deadline passes (failing with
    what it saw)."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    last: object = "no attempt yet"
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"gunicorn exited with {server.process.returncode}\n{server.output()}")
        try:
            health = f"{server.url}{contract.API_HEALTH_PATH}"
            requests.get(health, timeout=REQUEST_TIMEOUT).raise_for_status()
        except requests.RequestException as error:
            last = error
            time.sleep(0.1)
        else:
            return
    pytest.fail(f"gunicorn did not answer within {STARTUP_TIMEOUT} s: {last}\n{server.output()}")


def access_log_line(server: Gunicorn, text: str) -> str:
    """The one access log line containing text; gunicorn writes it just after the response."""
    deadline = time.monotonic() + 5
    while not (lines := [line for line in server.stdout.read_text().splitlines() if text in line]):
        if time.monotonic() > deadline:
            pytest.fail(f"no log line contains {text!r}\n{server.output()}")
        time.sleep(0.05)
    [line] = lines
    return line


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


@pytest.fixture(scope="module")
def gunicorn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gunicorn]:
    logs = tmp_path_factory.mktemp("gunicorn")
    port = free_port()
    with (logs / "stdout").open("wb") as stdout, (logs / "stderr").open("wb") as stderr:
        process = subprocess.Popen(
            GUNICORN,
            cwd=SERVICE_DIR,
            env=service_env(port),
            stdout=stdout,
            stderr=stderr,
        )
    server = Gunicorn(process, port, logs / "stdout", logs / "stderr")
    try:
        wait_until_serving(server)
        yield server
    finally:
        stop(process)


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port bound but not listening: connecting to it is refused while the test runs."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        yield int(holder.getsockname()[1])


def run_healthcheck(port: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SERVICE_DIR / "healthcheck.py")],
        env=service_env(port),
        capture_output=True,
        text=True,
        timeout=15,
        check=False,
    )


def test_root_says_hello(gunicorn: Gunicorn) -> None:
    response = requests.get(gunicorn.url, timeout=REQUEST_TIMEOUT)

    assert response.status_code == 200
    assert response.json() == {"message": "Hello, Being!"}


def test_access_log_names_forwarded_client_and_request_id(gunicorn: Gunicorn) -> None:
    client, request_id = "203.0.113.7", uuid.uuid4().hex
    requests.get(
        gunicorn.url,
        headers={"X-Forwarded-For": client, "X-Request-ID": request_id},
        timeout=REQUEST_TIMEOUT,
    ).raise_for_status()

    line = access_log_line(gunicorn, request_id)
    assert line.startswith(f"{client} via 127.0.0.1 ")
    assert f'rid={request_id} "GET / HTTP/1.1" 200 ' in line


def test_healthcheck_passes_against_running_server(gunicorn: Gunicorn) -> None:
    result = run_healthcheck(gunicorn.port)

    assert result.returncode == 0, result.stderr


def test_healthcheck_fails_against_closed_port(closed_port: int) -> None:
    result = run_healthcheck(closed_port)

    assert result.returncode == 1
    assert f"health check http://127.0.0.1:{closed_port}/" in result.stderr


def test_non_integer_port_is_refused_with_a_clear_message() -> None:
    result = subprocess.run(
        GUNICORN,
        cwd=SERVICE_DIR,
        env={**os.environ, "PORT": "eighty"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert result.returncode != 0
    assert "PORT='eighty' is not an integer" in result.stdout + result.stderr


def start_gunicorn(
    tmp_path: Path, service_dir: Path, command: list[str] = GUNICORN, **environment: str
) -> Gunicorn:
    """gunicorn with the project's config from `service_dir`, on a port of its own (`command`:
    the image's unless given)."""
    port = free_port()
    with (tmp_path / "stdout").open("wb") as stdout, (tmp_path / "stderr").open("wb") as stderr:
        process = subprocess.Popen(
            command,
            cwd=service_dir,
            env={**service_env(port), **environment},
            stdout=stdout,
            stderr=stderr,
        )
    return Gunicorn(process, port, tmp_path / "stdout", tmp_path / "stderr")


def refused(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(REQUEST_TIMEOUT)
        return probe.connect_ex(("127.0.0.1", port)) == errno.ECONNREFUSED


def broken_import(service: Path) -> None:
    with (service / "rest_api" / "routes.py").open("a") as routes:
        routes.write('raise RuntimeError("a release that cannot import")\n')


# gunicorn serving the app itself, with no health endpoint in front (not the image's command).
BARE_APP = [sys.executable, "-m", "gunicorn", "wsgi:app"]


@pytest.mark.parametrize(
    ("breakage", "command", "environment", "reason"),
    [
        (broken_import, GUNICORN, {}, "a release that cannot import"),
        # The check itself, where the health path is the app's to answer and it can't.
        (None, BARE_APP, {"API_HEALTH_PATH": "/no-such-path"}, "GET /no-such-path answered 404"),
    ],
    ids=["import-fails", "health-path-fails"],
)
def test_a_release_that_fails_its_start_check_never_listens(
    tmp_path: Path,
    breakage: Callable[[Path], None] | None,
    command: list[str],
    environment: dict[str, str],
    reason: str,
) -> None:
    """Never listening, it gets no request from the proxy (a refused connection is retried on
    another instance); it stays up for the hold, so its address stays put, then exits."""
    service = tmp_path / "service"
    shutil.copytree(SERVICE_DIR, service, ignore=shutil.ignore_patterns("__pycache__"))
    if breakage is not None:
        breakage(service)
    server = start_gunicorn(
        tmp_path, service, command, GUNICORN_START_FAILURE_HOLD="3", **environment
    )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while "start check failed" not in server.output():
            assert time.monotonic() < deadline, f"no start check failure logged\n{server.output()}"
            time.sleep(0.1)
        assert reason in server.output()
        assert server.process.poll() is None, "exited at once instead of holding"
        assert refused(server.port), "listening although its start check failed"
        assert server.process.wait(timeout=15) != 0
    finally:
        stop(server.process)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_graceful_stop_refuses_new_connections_at_once(tmp_path: Path, workers: str) -> None:
    """SIGTERM: new connections are refused straight away (the proxy retries them elsewhere),
    while a request on a kept-alive connection is still answered, then the process exits. With
    several workers the port closes once each has let go of it."""
    server = start_gunicorn(tmp_path, SERVICE_DIR, WEB_CONCURRENCY=workers)
    try:
        wait_until_serving(server)
        with requests.Session() as kept_alive:
            kept_alive.get(server.url, timeout=REQUEST_TIMEOUT).raise_for_status()
            server.process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 1.0
            while not refused(server.port):
                assert time.monotonic() < deadline, "still accepting 1 s after SIGTERM"
                time.sleep(0.02)
            response = kept_alive.get(server.url, timeout=REQUEST_TIMEOUT)
            assert response.status_code == 200
            assert response.headers.get("Connection") == "close"
        assert server.process.wait(timeout=15) == 0, server.output()
    finally:
        stop(server.process)


def wait_for_message(server: Gunicorn, message: str) -> None:
    """Until GET / answers with `message` (failing with the last answer after the deadline)."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    last: object = "no answer yet"
    while time.monotonic() < deadline:
        try:
            last = requests.get(server.url, timeout=REQUEST_TIMEOUT).json()
        except requests.RequestException as error:
            last = error
        if last == {"message": message}:
            return
        time.sleep(0.2)
    pytest.fail(f"GET / still answers {last!r}, not {message!r}\n{server.output()}")


def test_hup_loads_changed_code(tmp_path: Path) -> None:
    """The master never imports the app (its start check runs in a child): a HUP's new workers
    load the code as it is on disk then."""
    service = tmp_path / "service"
    shutil.copytree(SERVICE_DIR, service, ignore=shutil.ignore_patterns("__pycache__"))
    server = start_gunicorn(tmp_path, service)
    try:
        wait_until_serving(server)
        wait_for_message(server, "Hello, Being!")
        routes = service / "rest_api" / "routes.py"
        routes.write_text(routes.read_text().replace("Hello, Being!", "Hello, reloaded!"))
        server.process.send_signal(signal.SIGHUP)
        wait_for_message(server, "Hello, reloaded!")
    finally:
        stop(server.process)


def test_each_worker_warms_its_own_app_up(tmp_path: Path) -> None:
    """GUNICORN_WARMUP_REQUESTS: every worker asks the app's own route in-process after loading
    the app itself, before it accepts (the JIT compiles in the process that serves); not the
    health path, which is answered in front of the app."""
    server = start_gunicorn(
        tmp_path, SERVICE_DIR, WEB_CONCURRENCY="2", GUNICORN_WARMUP_REQUESTS="5"
    )
    try:
        wait_until_serving(server)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while (
            len(
                warmed := re.findall(
                    r"\[(\d+)\] \[INFO\] warmed up: 5 requests to /\n", server.output()
                )
            )
            < 2
        ):
            assert time.monotonic() < deadline, f"not every worker warmed up\n{server.output()}"
            time.sleep(0.1)
        assert len(set(warmed)) == 2, f"warm-ups not in two workers: {warmed}\n{server.output()}"
        assert str(server.process.pid) not in warmed, "the master warmed up"
    finally:
        stop(server.process)


def test_a_warm_up_path_the_app_lacks_is_logged_and_the_worker_serves(tmp_path: Path) -> None:
    """A warm-up only makes a worker faster: a path the app answers with 404 is a warning."""
    server = start_gunicorn(
        tmp_path, SERVICE_DIR, GUNICORN_WARMUP_REQUESTS="3", GUNICORN_WARMUP_PATH="/nowhere"
    )
    try:
        wait_until_serving(server)
        wait_for_message(server, "Hello, Being!")
        assert "warm-up: GET /nowhere answered 404 NOT FOUND" in server.output(), server.output()
    finally:
        stop(server.process)


# Appended to a copy of the config: each worker dies (SIGKILL, as in a crash or an out-of-memory
# kill) right after the first write of a response to the socket.
DIES_AFTER_A_RESPONSES_FIRST_WRITE = """
from gunicorn.http import wsgi as _wsgi

_project_post_worker_init = post_worker_init


class _DiesAfterItsFirstWrite:
    def __init__(self, sock):
        self._sock = sock

    def sendall(self, data):
        self._sock.sendall(data)
        os.kill(os.getpid(), signal.SIGKILL)

    def __getattr__(self, name):
        return getattr(self._sock, name)


def post_worker_init(worker):
    _project_post_worker_init(worker)
    create = _wsgi.create
    _wsgi.create = lambda req, sock, *rest, **kw: create(
        req, _DiesAfterItsFirstWrite(sock), *rest, **kw
    )
"""


def test_a_worker_killed_after_its_first_write_has_sent_the_whole_response(
    tmp_path: Path,
) -> None:
    """The worst moment to die: right after a response's first write. That write held the
    headers and the body: the client (the proxy) gets the whole response, never headers alone,
    which it could neither complete nor send to another instance."""
    service = tmp_path / "service"
    shutil.copytree(SERVICE_DIR, service, ignore=shutil.ignore_patterns("__pycache__"))
    with (service / "gunicorn.conf.py").open("a") as config:
        config.write(DIES_AFTER_A_RESPONSES_FIRST_WRITE)
    server = start_gunicorn(tmp_path, service, WEB_CONCURRENCY="1")

    def until_logged(text: str, count: int) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while server.output().count(text) < count:
            assert time.monotonic() < deadline, f"{text!r} not {count}x\n{server.output()}"
            time.sleep(0.05)

    try:
        # Each request kills the worker that answers it, and the master starts another: the
        # next request waits for it, so that no worker about to die accepts it.
        for killed in range(3):
            until_logged("Booting worker", killed + 1)
            response = requests.get(server.url, timeout=REQUEST_TIMEOUT)
            assert response.json() == {"message": "Hello, Being!"}
            until_logged("was sent SIGKILL", killed + 1)
    finally:
        stop(server.process)


def test_a_replaced_app_starts_and_is_healthy_without_the_posts_route(tmp_path: Path) -> None:
    """Health never asks the app: an app with no GET / passes gunicorn's start check, listens
    and passes the image's health check, and serves its own routes."""
    server = start_gunicorn(tmp_path, service_with_replaced_app(tmp_path))
    try:
        wait_until_serving(server)
        result = run_healthcheck(server.port)
        assert result.returncode == 0, result.stderr
        assert requests.get(f"{server.url}/items", timeout=REQUEST_TIMEOUT).json() == ITEMS
        assert requests.get(server.url, timeout=REQUEST_TIMEOUT).status_code == 404
    finally:
        stop(server.process)
