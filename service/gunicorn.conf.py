"""gunicorn settings for the API container.

gunicorn reads this file from its working directory (/app in the image). Each setting can be
overridden from the environment, so the Pulumi program (or `docker run -e`) tunes a container
without a new image.
"""

import os
import resource
import signal
import time
from typing import Any

from gunicorn.http import wsgi
from werkzeug.test import Client


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise SystemExit(f"gunicorn.conf.py: {name}={value!r} is not an integer") from None


def _env_switch(name: str, default: bool) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    if value in {"on", "true", "1"}:
        return True
    if value in {"off", "false", "0"}:
        return False
    raise SystemExit(f"gunicorn.conf.py: {name}={value!r} is not on or off")


# --- Process limit -------------------------------------------------------------------------
# Processes and threads the API's user may run (RLIMIT_NPROC, soft and hard), for every process
# gunicorn starts: a fork-bomb bound. The kernel counts them per uid over the whole host: the
# stack runs its API containers as a uid of its own, so the bound is the stack's, shared by its
# API containers on the host (old and new ones during a deploy). Set here, not as a container
# ulimit, because Docker merges a host's default ulimits into those and pulumi-docker would read
# that back as a change.
# Lowering a limit needs no privilege; it never goes above what the container already has.
_process_limit = _env_int("PROCESS_LIMIT", 0)
if _process_limit:
    _, _hard = resource.getrlimit(resource.RLIMIT_NPROC)
    if _hard != resource.RLIM_INFINITY:
        _process_limit = min(_process_limit, _hard)
    resource.setrlimit(resource.RLIMIT_NPROC, (_process_limit, _process_limit))

# --- Socket --------------------------------------------------------------------------------
# All interfaces of the container; the port is only reachable on the stack's private Docker
# network (the Pulumi program publishes no API port to the host).
bind = f"0.0.0.0:{_env_int('PORT', 8000)}"

# --- Workers -------------------------------------------------------------------------------
# Processes: 2 by default, one per core of a small host; WEB_CONCURRENCY overrides (gunicorn
# also reads it natively). Usual range 1-2 per core available to the container.
workers = _env_int("WEB_CONCURRENCY", 2)
# gthread: each worker serves several connections with threads, and keeps them alive between
# requests, which the proxy's upstream pool relies on (sync closes every connection). gunicorn
# runs gthread whenever threads > 1 (the stack's apiThreads, 4 by default) whatever this says.
# `make bench` compares workers, threads and sync through the proxy (bench/results/results.md,
# settings compared through the proxy).
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gthread")
# Threads per gthread worker (ignored by sync). Usual range 2-8 for I/O-light handlers.
threads = _env_int("GUNICORN_THREADS", 4)
# Heartbeat files live in RAM (/dev/shm is a tmpfs in every container) so that the root
# filesystem can be read-only and a slow disk never looks like a hung worker.
worker_tmp_dir = "/dev/shm"  # noqa: S108 (the container's own tmpfs)

# --- Timeouts ------------------------------------------------------------------------------
# A worker silent for this long is killed and replaced. The proxy's timeouts sit above it.
timeout = _env_int("GUNICORN_TIMEOUT", 30)
# Time for in-flight requests on SIGTERM; below Docker's default stop timeout (10 s), so a
# `docker stop` ends gracefully rather than in SIGKILL.
graceful_timeout = _env_int("GUNICORN_GRACEFUL_TIMEOUT", 8)
# Idle keep-alive seconds (gthread only); above the proxy's idle upstream timeout (4 s), so the
# API never closes a connection nginx is about to reuse.
keepalive = _env_int("GUNICORN_KEEPALIVE", 5)

# --- Proxy headers -------------------------------------------------------------------------
# Peers whose X-Forwarded-* headers are believed (e.g. X-Forwarded-Proto for url_scheme).
# Default: none but localhost. The Pulumi program sets the stack network's subnet, the only
# place the proxy can connect from, since the API port is never published to the host.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")

# --- Logging -------------------------------------------------------------------------------
# Access log to stdout for `docker logs`: the original client (X-Forwarded-For, set by the
# proxy), request id, request line, status, size and duration in microseconds. On unless
# GUNICORN_ACCESS_LOG=off, which the stack sets (apiAccessLog): the proxy's access log has
# every request too, with the same request id, and this line is a large share of the API's CPU
# per request, plus the engine's work to ship it (bench/results/results.md).
accesslog = "-" if _env_switch("GUNICORN_ACCESS_LOG", True) else None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
access_log_format = (
    '%({x-forwarded-for}i)s via %(h)s %(t)s rid=%({x-request-id}i)s "%(r)s" %(s)s %(B)s %(D)sus'
)

# --- Rolling deploys ----------------------------------------------------------------------
# An instance listens only once its app has loaded and answered its health path (checked in a
# child process), and stops accepting the moment it is asked to stop: the proxy, which sends
# requests to every address of the API's name, then never waits on an instance that cannot
# serve or is stopping. A refused connection is retried on another instance at once, whatever
# the method (nothing was sent). Connections that arrive while the workers then load the app
# themselves wait in the listen queue until one accepts.
#
# The path the image's HEALTHCHECK asks, and gunicorn asks in-process before it listens.
health_path = os.environ.get("API_HEALTH_PATH", "/")
# How long a release that fails its start check stays up, not listening, before it exits and
# Docker restarts it: its address stays put meanwhile, where the proxy meets a quick refusal,
# rather than coming and going with every restart.
start_failure_hold = _env_int("GUNICORN_START_FAILURE_HOLD", 60)
# How long a stopping instance stays up after its workers have exited, refusing connections:
# the proxy, still sending to its address, gets quick refusals and rests it (for 2 s) rather
# than, once the container is gone and until its next DNS answer (1 s), connections to an
# address nobody answers, which it gives up on only after its 250 ms connect timeout.
stop_linger = _env_int("GUNICORN_STOP_LINGER", 2)
# Requests each worker sends its app in-process after loading it, before it accepts: under
# PyPy, the JIT compiles the app's hot path then, in the worker that serves it, instead of
# during its first thousands of requests. 0 (CPython): none.
warmup_requests = _env_int("GUNICORN_WARMUP_REQUESTS", 0)
# The path the warm-up asks: a route of the app's own (the health path is answered in front of
# the app, so it would warm nothing). Point it at your app's busiest GET route.
warmup_path = os.environ.get("GUNICORN_WARMUP_PATH", "/")


def _answers(app: Any, path: str, times: int) -> str:
    """GET `path` of the app in-process `times` times; the statuses it answered, joined."""
    client = Client(app)
    statuses: set[str] = set()
    for _ in range(times):
        with client.get(path) as response:
            statuses.add(response.status)
    return ", ".join(sorted(statuses))


def on_starting(server: Any) -> None:
    """Before the port is bound, check that the app loads and answers its health path, in a
    child process that then exits. The master never imports the app: a HUP's new workers load
    the code as it is then, and workers inherit nothing the app opened at import (a database
    pool, a thread, a file), each loading its own (gunicorn's preload_app stays off)."""
    child = os.fork()
    if child == 0:
        status = 1
        try:
            answered = _answers(server.app.wsgi(), health_path, 1)
            if answered != "200 OK":
                raise RuntimeError(f"GET {health_path} answered {answered}, not 200")
            status = 0
        except Exception:
            server.log.exception("start check failed")
        finally:
            os._exit(status)  # the master's cleanup (atexit, buffers) is the master's own
    _, status = os.waitpid(child, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        server.log.error(
            "start check failed: not listening; exiting in %s s (Docker then restarts it)",
            start_failure_hold,
        )
        # gunicorn's own signal handlers come later; as PID 1 with none, `docker stop`'s
        # SIGTERM would be ignored and the stop would wait for SIGKILL.
        signal.signal(signal.SIGTERM, _linger_then_exit)
        time.sleep(start_failure_hold)
        raise SystemExit(1)


def _linger_then_exit(signum: int, frame: Any) -> None:
    """Stopped while holding: linger (still refusing connections) as any stop does, then end."""
    time.sleep(stop_linger)
    raise SystemExit(1)


def on_exit(server: Any) -> None:
    """Linger (refusing connections) before the container ends: see stop_linger."""
    time.sleep(stop_linger)


def post_worker_init(worker: Any) -> None:
    """Responses go out as OneWriteResponse (below). Warm the worker's own app up
    (warmup_requests), then release the port early on a stop."""
    # The class gunicorn's workers build each HTTP/1 response with (wsgi.create); gunicorn has
    # no setting for it.
    wsgi.Response = OneWriteResponse
    if warmup_requests:
        _warm_up(worker, warmup_requests)
    _release_port_on_stop(worker)


def _warm_up(worker: Any, times: int) -> None:
    """Ask the worker's app for warmup_path `times` times. An answer other than 200 is logged,
    not fatal: the start check has already proved the instance healthy, and a warm-up only
    makes it faster."""
    answered = _answers(worker.wsgi, warmup_path, times)
    worker.log.info("warmed up: %s requests to %s", times, warmup_path)
    if answered != "200 OK":
        worker.log.warning("warm-up: GET %s answered %s", warmup_path, answered)


def _release_port_on_stop(worker: Any) -> None:
    """On a graceful stop (SIGTERM), let go of the listening socket as soon as the worker stops
    accepting; once every worker has, the port refuses connections. Without this, gunicorn keeps
    it open while in-flight and kept-alive requests finish (up to 2 s), and connections queued
    meanwhile wait that long, then are reset. gthread workers only (the stack's)."""
    set_accept_enabled = getattr(worker, "set_accept_enabled", None)
    if set_accept_enabled is None:
        return

    def set_accept_enabled_then_release(enabled: bool) -> None:
        set_accept_enabled(enabled)
        if not enabled and not worker.alive:
            for listener in worker.sockets:
                listener.close()  # gunicorn's own close at exit is then a no-op

    worker.set_accept_enabled = set_accept_enabled_then_release


# --- Responses in one write ---------------------------------------------------------------
# gunicorn writes a response's headers, then its body, in two writes. An instance killed between
# the two (a crash, an out-of-memory kill) leaves the proxy with headers it has already passed on
# and no body: the client gets a response cut short, which the proxy can no longer send to
# another instance. Held until the first body bytes, the headers go out in the same write as
# them, up to this many bytes of body (beyond, a copy of the body costs more than it is worth):
# a kill then finds either nothing written, a request the proxy retries elsewhere, or the whole
# response in the kernel, which delivers it.
one_write_max_body = 64 * 1024


class OneWriteResponse(wsgi.Response):
    """gunicorn's HTTP/1 response, whose headers wait for the body's first bytes or the end."""

    headers_sent: bool
    _held = b""
    _hold_headers = True

    def send_headers(self) -> None:
        if self.headers_sent or not self._hold_headers:
            super().send_headers()
            return
        lines = [*self.default_headers(), *(f"{k}: {v}\r\n" for k, v in self.headers), "\r\n"]
        self._held = "".join(lines).encode("latin-1")
        self.headers_sent = True

    def _emit_body(self, data: bytes) -> None:
        self._send(b"%X\r\n%s\r\n" % (len(data), data) if self.chunked else data)

    def sendfile(self, respiter: Any) -> bool:
        # gunicorn's sendfile writes the body to the socket itself: the headers go first.
        self._hold_headers = False
        return bool(super().sendfile(respiter))

    def close(self) -> None:
        if not self.headers_sent:
            self.send_headers()
        self._send(b"0\r\n\r\n" if self.chunked else b"")

    def _send(self, data: bytes) -> None:
        held, self._held = self._held, b""
        if held and len(data) > one_write_max_body:
            self.sock.sendall(held)
            held = b""
        if held or data:
            self.sock.sendall(held + data)


# --- Control socket ------------------------------------------------------------------------
# gunicorn 25+ opens a control socket for `gunicornc` under $HOME; nothing in a container uses
# it, and the read-only root filesystem has no place for it.
control_socket_disable = True
