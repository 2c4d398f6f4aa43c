"""Load runs: wrk on loopback only (on the host for the published port, or in a container's own
network namespace against 127.0.0.1 there), and the CPU each part used meanwhile: containers
from their cgroup's accounting, the engine (dockerd, containerd, the shims and docker-proxy:
they ship logs, relay published ports) from /proc, wrk as this process's waited-for children,
"other" the machine's busy time left. `measure` is the one runner of every figure."""

import json
import os
import resource
import shutil
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from bench.config import BenchError, log

LUA_REPORT: Final = Path(__file__).resolve().parent / "report.lua"
MARKER: Final = "BENCH_JSON "
# wrk shares the cores with the servers it loads: 2 threads (1 at concurrency 1: wrk needs a
# connection per thread).
MAX_THREADS: Final = 2
ENGINE_PROCESSES: Final = ("dockerd", "containerd", "containerd-shim", "docker-proxy")
TICK: Final = os.sysconf("SC_CLK_TCK")


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
    """Where load goes: a loopback URL, in the network namespace of process netns_pid (None:
    the host's); the containers whose CPU is accounted, by role; request headers; the
    concurrencies it is measured at (empty: all)."""

    url: str
    netns_pid: int | None
    containers: dict[str, Any] = field(default_factory=dict, compare=False)
    headers: tuple[str, ...] = ()
    concurrencies: tuple[int, ...] = ()


def threads_for(concurrency: int) -> int:
    return min(MAX_THREADS, concurrency)


# Per container id: the file of its cgroup's CPU time (None: ask the engine's stats instead).
_CGROUP_FILES: dict[str, Path | None] = {}


def _cgroup_file(pid: int) -> Path | None:
    """The CPU time file of the cgroup of process `pid` (a container's main process: the
    container's cgroup): cgroup v2's cpu.stat or v1's cpuacct.usage."""
    root = Path("/sys/fs/cgroup")
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # cgroup v2
            if (stat := root / path.lstrip("/") / "cpu.stat").is_file():
                return stat
        elif "cpuacct" in controllers.split(","):  # cgroup v1
            for mount in (controllers, "cpuacct", "cpu,cpuacct"):
                if (usage := root / mount / path.lstrip("/") / "cpuacct.usage").is_file():
                    return usage
    return None


def _container_seconds(container: Any) -> float:
    """CPU seconds the container has used: from its cgroup (at once and exact), else from the
    engine's stats (which answer only at its next 1 s collection)."""
    if container.id not in _CGROUP_FILES:
        container.reload()
        _CGROUP_FILES[container.id] = _cgroup_file(int(container.attrs["State"]["Pid"]))
    path = _CGROUP_FILES[container.id]
    if path is None:
        stats = container.stats(stream=False, one_shot=True)
        return float(stats["cpu_stats"]["cpu_usage"]["total_usage"]) / 1e9
    if path.name == "cpuacct.usage":  # nanoseconds
        return int(path.read_text()) / 1e9
    for line in path.read_text().splitlines():
        key, _, value = line.partition(" ")
        if key == "usage_usec":
            return int(value) / 1e6
    raise LookupError(f"{path}: no usage_usec")


def cpu_sample(containers: dict[str, Any]) -> dict[str, Any]:
    """CPU seconds so far of each part, and the wall clock."""
    wall = time.monotonic()
    stat = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    machine = (sum(stat) - stat[3] - stat[4]) / TICK  # all cores: not idle, not iowait
    own = {role: _container_seconds(container) for role, container in containers.items()}
    engine = 0.0
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "comm").read_text().startswith(ENGINE_PROCESSES):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                engine += (int(fields[11]) + int(fields[12])) / TICK  # utime + stime
        except OSError:  # gone meanwhile
            continue
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    wrk = children.ru_utime + children.ru_stime
    return {"wall": wall, "machine": machine, "containers": own, "engine": engine, "wrk": wrk}


def cpu_usage(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float]:
    """Average cores used by each part between two samples (machine = all of them)."""
    wall = max(after["wall"] - before["wall"], 1e-9)
    cores = {
        role: (t - before["containers"][role]) / wall for role, t in after["containers"].items()
    }
    cores |= {part: (after[part] - before[part]) / wall for part in ("engine", "wrk")}
    machine = (after["machine"] - before["machine"]) / wall
    cores |= {"other": max(machine - sum(cores.values()), 0.0), "machine": machine}
    return {key: round(value, 3) for key, value in cores.items()}


def time_wait(netns_pid: int | None) -> int:
    """TCP sockets in TIME_WAIT (state 06) in the network namespace of a process."""
    count = 0
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{netns_pid or 'self'}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        count += sum(1 for line in lines if line.split()[3] == "06")
    return count


def in_netns(
    pid: int | None, command: list[str], timeout: float
) -> subprocess.CompletedProcess[str]:
    """`command` in the network namespace of process `pid` (None: this host's)."""
    prefix = [] if pid is None else ["nsenter", f"--target={pid}", "--net"]
    return _run([*prefix, *command], timeout=timeout)


def errors(run: dict[str, Any]) -> int:
    return int(run["non_2xx"]) + sum(run["socket_errors"].values())


def run(target: Target, concurrency: int, seconds: int) -> dict[str, Any]:
    """One wrk run of `seconds` at `concurrency` connections, with the CPU each part used."""
    loadavg = os.getloadavg()[0]
    threads = threads_for(concurrency)
    wrk = ["wrk", f"-t{threads}", f"-c{concurrency}", f"-d{seconds}s", "-s", str(LUA_REPORT)]
    wrk += [argument for header in target.headers for argument in ("-H", header)] + [target.url]
    before = cpu_sample(target.containers)
    result = in_netns(target.netns_pid, wrk, timeout=seconds + 60)
    after = cpu_sample(target.containers)
    if result.returncode != 0:
        raise BenchError(f"wrk failed ({result.returncode}): {result.stderr[-2000:]}")
    lines = [line for line in result.stdout.splitlines() if line.startswith(MARKER)]
    if not lines:
        raise BenchError(f"wrk printed no report line:\n{result.stdout[-2000:]}")
    report = json.loads(lines[0][len(MARKER) :])
    duration, requests = report["duration_us"] / 1e6, int(report["requests"])
    cores, wall = cpu_usage(before, after), after["wall"] - before["wall"]
    return {
        "concurrency": concurrency,
        "threads": threads,
        "duration_s": round(duration, 3),
        "requests": requests,
        "rps": round(requests / duration, 1) if duration else 0.0,
        **{f"{p}_ms": report[f"{p}_us"] / 1000 for p in ("p50", "p90", "p99")},
        "mean_ms": round(report["mean_us"] / 1000, 3),
        "max_ms": report["max_us"] / 1000,
        "non_2xx": int(report["status"]),
        "socket_errors": {key: int(report[key]) for key in ("connect", "read", "write", "timeout")},
        # Average cores of each part during the run, and CPU microseconds per request.
        "cpu_cores": cores,
        "cpu_us_per_request": {
            part: round(value * wall / requests * 1e6, 1) if requests else 0.0
            for part, value in cores.items()
        },
        "loadavg_1m": round(loadavg, 2),
        # Sockets in TIME_WAIT in the client's network namespace after the run.
        "time_wait_after": time_wait(target.netns_pid),
    }


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the runs; error counts added up."""

    def median(values: list[float]) -> float:
        return round(statistics.median(values), 3)

    return {
        **{
            f: median([r[f] for r in runs])
            for f in ("rps", "p50_ms", "p90_ms", "p99_ms", "mean_ms")
        },
        "requests": sum(r["requests"] for r in runs),
        "non_2xx": sum(r["non_2xx"] for r in runs),
        "socket_errors": sum(sum(r["socket_errors"].values()) for r in runs),
        **{
            f: {part: median([r[f][part] for r in runs]) for part in runs[0]["cpu_cores"]}
            for f in ("cpu_cores", "cpu_us_per_request")
        },
        "rps_spread": [min(r["rps"] for r in runs), max(r["rps"] for r in runs)],
    }


def measure(
    targets: dict[str, Target],
    concurrencies: tuple[int, ...],
    warmup_s: int,
    seconds: int,
    runs: int,
) -> dict[str, dict[str, Any]]:
    """{target: {concurrency: {"median", "runs", "warmup"}}}: at each concurrency a warm-up of
    each target (none if warmup_s is 0), then `runs` runs of each without a pause, the targets
    taking turns run by run so that a noisy moment of the shared host falls on all alike."""
    results: dict[str, dict[str, Any]] = {key: {} for key in targets}
    for c in concurrencies:
        now = {key: t for key, t in targets.items() if c in (t.concurrencies or [c])}
        warmups: dict[str, Any] = {key: None for key in now}
        for key, target in now.items() if warmup_s else []:
            warmups[key] = run(target, c, warmup_s)
            log(f"warm-up {key} {describe(warmups[key])}")
        measured: dict[str, list[dict[str, Any]]] = {key: [] for key in now}
        for index in range(runs):
            for key, target in now.items():
                measured[key].append(run(target, c, seconds))
                log(f"run {index + 1}/{runs} {key} {describe(measured[key][-1])}")
        for key, values in measured.items():
            results[key][str(c)] = {
                "median": summarize(values),
                "runs": values,
                "warmup": warmups[key],
            }
    return results


def describe(run: dict[str, Any]) -> str:
    return (
        f"c={run['concurrency']}: {run['rps']:.0f} req/s, p99 {run['p99_ms']:.2f} ms, proxy"
        f" {run['cpu_us_per_request'].get('proxy', 0):.0f} µs/req, errors {errors(run)},"
        f" TIME_WAIT {run['time_wait_after']}, load {run['loadavg_1m']}"
    )
