"""wrk, the load generator: installed if missing, run on loopback, its report parsed.

wrk runs on loopback only: on the host for the published port, or inside a container's own
network namespace (`nsenter --net`) against 127.0.0.1 there, so no load is ever sent to
another address. It shares the 2 cores with the servers it loads, so it runs 2 threads (1 at
concurrency 1, since wrk needs a connection per thread).
"""

import json
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from bench import cpu

LUA_REPORT: Final = Path(__file__).resolve().parent / "report.lua"
MARKER: Final = "BENCH_JSON "
MAX_THREADS: Final = 2


class BenchError(RuntimeError):
    """The benchmark cannot go on; the message says why."""


def _run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, check=False, **kwargs)  # noqa: S603


def ensure_tools() -> str:
    """wrk's version line; installs Debian's wrk with apt-get when it is missing."""
    if os.geteuid() != 0:
        raise BenchError("run as root: wrk runs inside containers' network namespaces (nsenter)")
    if shutil.which("nsenter") is None:
        raise BenchError("nsenter is missing: apt-get install util-linux")
    if shutil.which("wrk") is None:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-qq", "wrk"]
        if _run(install, env=env).returncode != 0:
            _run(["apt-get", "update", "-qq"], env=env)
            result = _run(install, env=env)
            if result.returncode != 0:
                raise BenchError(f"apt-get install wrk failed:\n{result.stderr[-2000:]}")
    version = _run(["wrk", "--version"])
    return (version.stdout + version.stderr).splitlines()[0].strip()


@dataclass(frozen=True)
class Target:
    """Where a scenario's load goes: a loopback URL, in the network namespace of the process
    netns_pid (None: the host's), and the containers whose CPU a run accounts, by role."""

    url: str
    netns_pid: int | None
    containers: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass
class LoadRun:
    concurrency: int
    threads: int
    duration_s: float
    requests: int
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    non_2xx: int
    socket_errors: dict[str, int]
    # Average cores of each part during the run, and CPU microseconds per request.
    cpu_cores: dict[str, float]
    cpu_us_per_request: dict[str, float]
    loadavg_1m: float
    # Sockets in TIME_WAIT in the client's network namespace after the run.
    time_wait_after: int

    @property
    def errors(self) -> int:
        return self.non_2xx + sum(self.socket_errors.values())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def time_wait(netns_pid: int | None) -> int:
    """TCP sockets in TIME_WAIT (state 06) in the network namespace of a process."""
    count = 0
    for table in ("tcp", "tcp6"):
        path = Path(f"/proc/{netns_pid or 'self'}/net/{table}")
        try:
            lines = path.read_text().splitlines()[1:]
        except OSError:
            continue
        count += sum(1 for line in lines if line.split()[3] == "06")
    return count


def threads_for(concurrency: int) -> int:
    return min(MAX_THREADS, concurrency)


def command(target: Target, concurrency: int, seconds: int, headers: tuple[str, ...]) -> list[str]:
    wrk = [
        "wrk",
        f"-t{threads_for(concurrency)}",
        f"-c{concurrency}",
        f"-d{seconds}s",
        "-s",
        str(LUA_REPORT),
    ]
    for header in headers:
        wrk += ["-H", header]
    wrk.append(target.url)
    if target.netns_pid is None:
        return wrk
    return ["nsenter", f"--target={target.netns_pid}", "--net", *wrk]


def parse(output: str) -> dict[str, Any]:
    for line in output.splitlines():
        if line.startswith(MARKER):
            return dict(json.loads(line[len(MARKER) :]))
    raise BenchError(f"wrk printed no report line:\n{output[-2000:]}")


def run(target: Target, concurrency: int, seconds: int, headers: tuple[str, ...] = ()) -> LoadRun:
    """One wrk run of `seconds` at `concurrency` connections."""
    loadavg = os.getloadavg()[0]
    before = cpu.sample(target.containers)
    result = _run(command(target, concurrency, seconds, headers), timeout=seconds + 60)
    after = cpu.sample(target.containers)
    if result.returncode != 0:
        raise BenchError(f"wrk failed ({result.returncode}): {result.stderr[-2000:]}")
    report = parse(result.stdout)
    duration = report["duration_us"] / 1e6
    requests = int(report["requests"])
    cores = cpu.usage(before, after)
    wall = after.wall - before.wall
    return LoadRun(
        concurrency=concurrency,
        threads=threads_for(concurrency),
        duration_s=round(duration, 3),
        requests=requests,
        rps=round(requests / duration, 1) if duration else 0.0,
        p50_ms=report["p50_us"] / 1000,
        p90_ms=report["p90_us"] / 1000,
        p99_ms=report["p99_us"] / 1000,
        mean_ms=round(report["mean_us"] / 1000, 3),
        max_ms=report["max_us"] / 1000,
        non_2xx=int(report["status"]),
        socket_errors={key: int(report[key]) for key in ("connect", "read", "write", "timeout")},
        cpu_cores=cores,
        cpu_us_per_request={
            part: round(value * wall / requests * 1e6, 1) if requests else 0.0
            for part, value in cores.items()
        },
        loadavg_1m=round(loadavg, 2),
        time_wait_after=time_wait(target.netns_pid),
    )
