"""The one runner of every load figure: wrk on loopback, and the CPU each part used."""

import contextlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from bench.config import BenchError, log

LUA_REPORT: Final = str(Path(__file__).resolve().parent / "report.lua")
MARKER: Final = "BENCH_JSON "
# wrk shares the cores with the servers it loads: 2 threads (1 at c=1: a connection per thread).
MAX_THREADS: Final = 2
ENGINE_PROCESSES: Final = ("dockerd", "containerd", "containerd-shim", "docker-proxy")
TICK: Final = os.sysconf("SC_CLK_TCK")
CGROUP: Final = Path("/sys/fs/cgroup")
# A warm-up that settles ends once a run's req/s is within this share of the run before's.
SETTLED: Final = 0.05
MEDIANS: Final = ("rps", "p50_ms", "p90_ms", "p99_ms", "mean_ms")
CPU_FIGURES: Final = ("cpu_cores", "cpu_us_per_request")


def ensure_tools() -> str:
    """wrk's version line, once sure the bench can run wrk in containers' network namespaces."""
    if os.geteuid() != 0 or not shutil.which("nsenter") or not shutil.which("wrk"):
        raise BenchError("run as root, with nsenter and wrk: apt-get install util-linux wrk")
    version = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)  # noqa: S607
    return (version.stdout + version.stderr).splitlines()[0].strip()


@dataclass(frozen=True)
class Target:
    """A loopback URL in process netns_pid's network namespace (None: the host's)."""

    url: str
    netns_pid: int | None
    containers: dict[str, Any] = field(default_factory=dict, compare=False)
    headers: tuple[str, ...] = ()
    concurrencies: tuple[int, ...] = ()  # empty: all of the run's
    warmup: tuple[int, int] = (0, 1)  # seconds per run (0: none), most runs till it settles


def threads_for(concurrency: int) -> int:
    return min(MAX_THREADS, concurrency)


_CGROUP_FILES: dict[str, Path | None] = {}


def _cgroup_file(pid: int) -> Path | None:
    """The CPU time file of process `pid`'s cgroup: v2's cpu.stat or v1's cpuacct.usage."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # cgroup v2
            candidates = [CGROUP / path.lstrip("/") / "cpu.stat"]
        elif "cpuacct" in controllers.split(","):  # cgroup v1
            mounts = (controllers, "cpuacct", "cpu,cpuacct")
            candidates = [CGROUP / m / path.lstrip("/") / "cpuacct.usage" for m in mounts]
        else:
            continue
        found = [candidate for candidate in candidates if candidate.is_file()]
        if found:
            return found[0]
    return None


def _container_seconds(container: Any) -> float:
    """A container's CPU seconds: from its cgroup (exact), else the engine's stats (1 s late)."""
    if container.id not in _CGROUP_FILES:
        container.reload()  # its main process's cgroup is the container's
        _CGROUP_FILES[container.id] = _cgroup_file(int(container.attrs["State"]["Pid"]))
    path = _CGROUP_FILES[container.id]
    if path is None:
        stats = container.stats(stream=False, one_shot=True)
        return float(stats["cpu_stats"]["cpu_usage"]["total_usage"]) / 1e9
    if path.name == "cpuacct.usage":  # nanoseconds
        return int(path.read_text()) / 1e9
    usage = dict(line.split(" ", 1) for line in path.read_text().splitlines())
    return int(usage["usage_usec"]) / 1e6


def cpu_sample(containers: dict[str, Any]) -> dict[str, Any]:
    """CPU seconds so far of each part (wrk: this process's waited-for children), wall clock."""
    wall = time.monotonic()
    stat = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    machine = (sum(stat) - stat[3] - stat[4]) / TICK  # all cores: not idle, not iowait
    engine = 0.0
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):  # gone meanwhile
            if entry.name.isdigit() and (entry / "comm").read_text().startswith(ENGINE_PROCESSES):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                engine += (int(fields[11]) + int(fields[12])) / TICK  # utime + stime
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = {role: _container_seconds(container) for role, container in containers.items()}
    wrk = children.ru_utime + children.ru_stime
    return {"wall": wall, "machine": machine, "containers": own, "engine": engine, "wrk": wrk}


def cpu_usage(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float]:
    """Average cores used by each part between two samples (machine = all of them)."""
    wall = max(after["wall"] - before["wall"], 1e-9)
    cores = {role: t - before["containers"][role] for role, t in after["containers"].items()}
    cores |= {part: after[part] - before[part] for part in ("engine", "wrk")}
    machine = after["machine"] - before["machine"]
    cores |= {"other": max(machine - sum(cores.values()), 0.0), "machine": machine}
    return {key: round(value / wall, 3) for key, value in cores.items()}


def run(target: Target, concurrency: int, seconds: int) -> dict[str, Any]:
    """One wrk run, the CPU each part used and the client's sockets in TIME_WAIT after it."""
    loadavg, threads = os.getloadavg()[0], threads_for(concurrency)
    netns = [] if target.netns_pid is None else ["nsenter", f"--target={target.netns_pid}", "--net"]
    wrk = [*netns, "wrk", f"-t{threads}", f"-c{concurrency}", f"-d{seconds}s", "-s", LUA_REPORT]
    wrk += [argument for header in target.headers for argument in ("-H", header)] + [target.url]
    before = cpu_sample(target.containers)
    result = subprocess.run(wrk, capture_output=True, text=True, timeout=seconds + 60, check=False)  # noqa: S603
    after = cpu_sample(target.containers)
    lines = [line for line in result.stdout.splitlines() if line.startswith(MARKER)]
    if result.returncode != 0 or not lines:
        output = result.stderr[-2000:] + result.stdout[-2000:]
        raise BenchError(f"wrk failed ({result.returncode}) or printed no report:\n{output}")
    report = json.loads(lines[0][len(MARKER) :])
    duration, requests = report["duration_us"] / 1e6, int(report["requests"])
    cores, wall = cpu_usage(before, after), after["wall"] - before["wall"]
    time_wait = 0
    for table in ("tcp", "tcp6"):  # TCP sockets in state 06
        with contextlib.suppress(OSError):
            netstat = Path(f"/proc/{target.netns_pid or 'self'}/net/{table}").read_text()
            time_wait += sum(line.split()[3] == "06" for line in netstat.splitlines()[1:])
    return {
        "concurrency": concurrency,
        "duration_s": round(duration, 3),
        "requests": requests,
        "rps": round(requests / duration, 1) if duration else 0.0,
        **{f"{p}_ms": report[f"{p}_us"] / 1000 for p in ("p50", "p90", "p99", "mean", "max")},
        "non_2xx": int(report["status"]),
        "socket_errors": {key: int(report[key]) for key in ("connect", "read", "write", "timeout")},
        "cpu_cores": cores,  # average cores of each part during the run
        "cpu_us_per_request": {
            part: round(value * wall / requests * 1e6, 1) if requests else 0.0
            for part, value in cores.items()
        },
        "loadavg_1m": round(loadavg, 2),
        "time_wait_after": time_wait,
    }


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the runs; error counts added up."""
    cpu = {f: {p: [r[f][p] for r in runs] for p in runs[0][f]} for f in CPU_FIGURES}
    return {
        **{figure: round(statistics.median(r[figure] for r in runs), 3) for figure in MEDIANS},
        "requests": sum(r["requests"] for r in runs),
        "non_2xx": sum(r["non_2xx"] for r in runs),
        "socket_errors": sum(sum(r["socket_errors"].values()) for r in runs),
        **{f: {p: round(statistics.median(v), 3) for p, v in cpu[f].items()} for f in cpu},
        "rps_spread": [min(r["rps"] for r in runs), max(r["rps"] for r in runs)],
    }


def warm_up(target: Target, concurrency: int) -> list[dict[str, Any]]:
    """Warm-up runs, until req/s changes less than SETTLED from the run before, at most so many."""
    seconds, most = target.warmup
    runs: list[dict[str, Any]] = []
    while seconds and len(runs) < most:
        runs.append(run(target, concurrency, seconds))
        if len(runs) > 1 and abs(runs[-1]["rps"] / runs[-2]["rps"] - 1) < SETTLED:
            break
    log(f"warm-up c={concurrency} {target.url}: {[r['rps'] for r in runs]} req/s")
    return runs


def measure(
    targets: dict[str, Target], concurrencies: Sequence[int], seconds: int, runs: int
) -> dict[str, dict[str, Any]]:
    """{target: {concurrency: cell}}: warm-ups, then `runs` runs of each target in turn."""
    results: dict[str, dict[str, Any]] = {key: {} for key in targets}
    for c in concurrencies:
        now = {key: t for key, t in targets.items() if c in (t.concurrencies or [c])}
        warmups = {key: warm_up(target, c) for key, target in now.items()}
        measured: dict[str, list[dict[str, Any]]] = {key: [] for key in now}
        for index in range(runs):
            for key, target in now.items():
                measured[key].append(figures := run(target, c, seconds))
                rps, p99, load = figures["rps"], figures["p99_ms"], figures["loadavg_1m"]
                log(f"{index + 1}/{runs} {key} c={c}: {rps} req/s, p99 {p99} ms, load {load}")
        for key, values in measured.items():
            cell = {"median": summarize(values), "runs": values, "warmups": warmups[key]}
            results[key][str(c)] = cell
    return results
