"""Where the CPU went during a load run: the machine, each container, the engine, wrk.

Containers: their cgroup's CPU accounting, read from the cgroup filesystem. Engine: dockerd,
containerd, the shims and docker-proxy, from /proc (they ship logs and relay published ports).
wrk: this process's waited-for children. "other": the machine's busy time not accounted to
any of these (whatever else runs on the host meanwhile).
"""

import functools
import os
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

ENGINE_PROCESSES: Final = ("dockerd", "containerd", "containerd-shim", "docker-proxy")
_TICK: Final = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Sample:
    wall: float
    machine_busy: float
    containers: dict[str, float]
    engine: float
    children: float


def _machine_busy() -> float:
    """CPU seconds spent not idle, all cores together."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values) - idle) / _TICK


def _engine_seconds() -> float:
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
            if not comm.startswith(ENGINE_PROCESSES):
                continue
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        total += (int(fields[11]) + int(fields[12])) / _TICK  # utime + stime
    return total


def _cgroup_reader(pid: int) -> Callable[[], float] | None:
    """A reader of the CPU seconds used so far by the cgroup of process `pid` (a container's
    main process: the container's cgroup), from the cgroup filesystem; None if not found."""
    root = Path("/sys/fs/cgroup")
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # cgroup v2: usage_usec in cpu.stat
            stat = root / path.lstrip("/") / "cpu.stat"
            if stat.is_file():
                return functools.partial(_usage_usec, stat)
        elif "cpuacct" in controllers.split(","):  # cgroup v1: nanoseconds in cpuacct.usage
            for mount in (controllers, "cpuacct", "cpu,cpuacct"):
                usage = root / mount / path.lstrip("/") / "cpuacct.usage"
                if usage.is_file():
                    return functools.partial(_usage_ns, usage)
    return None


def _usage_ns(usage: Path) -> float:
    return int(usage.read_text()) / 1e9


def _usage_usec(stat: Path) -> float:
    for line in stat.read_text().splitlines():
        key, _, value = line.partition(" ")
        if key == "usage_usec":
            return int(value) / 1e6
    raise LookupError(f"{stat}: no usage_usec")


_READERS: dict[str, Callable[[], float]] = {}


def _container_seconds(container: Any) -> float:
    """CPU seconds the container has used: read from its cgroup (at once and exact), else from
    the engine's stats (which answer only at its next 1 s collection)."""
    if container.id not in _READERS:
        container.reload()
        reader = _cgroup_reader(int(container.attrs["State"]["Pid"]))
        _READERS[container.id] = reader or (lambda: _stats_seconds(container))
    return _READERS[container.id]()


def _stats_seconds(container: Any) -> float:
    stats = container.stats(stream=False, one_shot=True)
    return float(stats["cpu_stats"]["cpu_usage"]["total_usage"]) / 1e9


def sample(containers: dict[str, Any]) -> Sample:
    own = resource.getrusage(resource.RUSAGE_CHILDREN)
    return Sample(
        wall=time.monotonic(),
        machine_busy=_machine_busy(),
        containers={role: _container_seconds(c) for role, c in containers.items()},
        engine=_engine_seconds(),
        children=own.ru_utime + own.ru_stime,
    )


def usage(before: Sample, after: Sample) -> dict[str, float]:
    """Average cores used by each part between two samples (machine = all of them)."""
    wall = max(after.wall - before.wall, 1e-9)
    cores = {
        role: (after.containers[role] - before.containers[role]) / wall
        for role in before.containers
    }
    cores["engine"] = (after.engine - before.engine) / wall
    cores["wrk"] = (after.children - before.children) / wall
    machine = (after.machine_busy - before.machine_busy) / wall
    cores["other"] = max(machine - sum(cores.values()), 0.0)
    cores["machine"] = machine
    return {key: round(value, 3) for key, value in cores.items()}
