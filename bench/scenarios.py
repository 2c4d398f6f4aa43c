"""The rows of scenarios.toml that load servers (the load matrix's scenarios, the settings
compared through the proxy), the servers they need beside the stack, and the sustained load.
Every figure goes through bench.load."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import docker
import docker.types
from docker.models.containers import Container

import contract
from bench import engine, load
from bench.config import PATH, REPO_ROOT, TABLES, Run

NGINX_DIR: Final = Path(__file__).resolve().parent / "nginx"
BASELINE_CONF, CEILING_CONF = NGINX_DIR / "baseline.conf", NGINX_DIR / "ceiling.conf"
# gunicorn as the original post ran it: its own defaults (one sync worker, no access log),
# not the project's gunicorn.conf.py.
BASELINE_COMMAND: Final = ["gunicorn", "-c", "/dev/null", "--bind", "0.0.0.0:8000", "wsgi:app"]
TMPFS: Final = {"/tmp": "rw,noexec,nosuid,nodev,size=16m"}  # noqa: S108 (in the container)
# As the stack runs its containers (infra/rest_api_stack.py): a figure of a container the
# bench starts is one of the stack's but for the settings changed.
HARDENING: Final = {"cap_drop": ["ALL"], "security_opt": ["no-new-privileges=true"]}
API_OPTIONS: Final[dict[str, Any]] = {
    **HARDENING,
    "user": contract.API_USER,
    "read_only": True,
    "tmpfs": TMPFS,
    "mem_limit": "256m",
    "ulimits": [docker.types.Ulimit(name="nproc", soft=512, hard=512)],
    "log_config": docker.types.LogConfig(
        type="json-file", config={"max-size": "10m", "max-file": "3"}
    ),
}
PROXY_OPTIONS: Final = {
    **HARDENING,
    "user": contract.PROXY_USER,
    "tmpfs": TMPFS,
    "mem_limit": "128m",
}
# Source ports nginx can use towards one upstream address (net.ipv4.ip_local_port_range,
# 32768-60999), each held for 60 s in TIME_WAIT after nginx closes a connection.
SOURCE_PORTS: Final = 60999 - 32768 + 1
TW_REUSE: Final = "net.ipv4.tcp_tw_reuse"
KERNEL_TW_REUSE: Final = "2"


@dataclass(frozen=True)
class Scenario:
    """A row of the load matrix (scenarios.toml says what each field does)."""

    key: str
    title: str
    how: str
    system: str
    enter: str | None = None
    port: int = 0
    alone: bool = False
    scheme: str = "http"
    headers: tuple[str, ...] = ()
    concurrencies: tuple[int, ...] = ()


@dataclass(frozen=True)
class Setup:
    """A row of the settings compared through the proxy (see scenarios.toml)."""

    key: str
    title: str
    api_environment: dict[str, str] = field(default_factory=dict)
    replacements: dict[str, str] = field(default_factory=dict)
    conf: str | None = None


SCENARIOS: Final = tuple(Scenario(**row) for row in TABLES["scenario"])
SETUPS: Final = tuple(Setup(**row) for row in TABLES["setup"])
# The settings compared and the sustained load: wrk in the proxy's namespace, all accounted.
THROUGH_PROXY: Final = Scenario("", "", "", "", "proxy", contract.PROXY_CONTAINER_PORT)


def nginx_conf(setup: Setup) -> str:
    """proxy/nginx.conf with each `old` line replaced by `new`, or a file of bench/nginx/."""
    if setup.conf:
        return (NGINX_DIR / setup.conf).read_text()
    text = (REPO_ROOT / "proxy" / "nginx.conf").read_text()
    for old, new in setup.replacements.items():
        if text.count(old) != 1:
            raise ValueError(f"proxy/nginx.conf has {text.count(old)} copies of {old!r}, not 1")
        text = text.replace(old, new)
    return text


def target(scenario: Scenario, group: dict[str, Container], url: str = "") -> load.Target:
    """Where `scenario` sends its load, `group` being its system's containers by role."""
    options = (tuple(scenario.headers), tuple(scenario.concurrencies))
    if scenario.enter is None:  # the stack's published URL, from the host
        return load.Target(url + PATH, None, group, *options)
    entered = group[scenario.enter]
    accounted = {scenario.enter: entered} if scenario.alone else group
    url = f"{scenario.scheme}://127.0.0.1:{scenario.port}{PATH}"
    return load.Target(url, engine.netns_pid(entered), accounted, *options)


def _environment(container: Container) -> dict[str, str]:
    container.reload()
    return dict(entry.split("=", 1) for entry in container.attrs["Config"]["Env"])


def _network(container: Container) -> str:
    (network,) = container.attrs["NetworkSettings"]["Networks"]
    return str(network)


def _nginx(
    client: docker.DockerClient, run: Run, what: str, image: str, conf: str, **kw: Any
) -> Container:
    """nginx with `conf` as its nginx.conf, serving on 8080 (kw: the container's options)."""
    file = ("/etc/nginx/nginx.conf", conf)
    return engine.start(client, run, what, image, probe=engine.http_probe(8080), file=file, **kw)


class Servers:
    """Containers run beside the stack, as the stack's are but for what is changed."""

    def __init__(self, client: docker.DockerClient, run: Run, exports: dict[str, Any]) -> None:
        self.client, self.run = client, run
        self.proxy = client.containers.get(exports[contract.EXPORT_PROXY_CONTAINER])
        self.apis = [client.containers.get(n) for n in exports[contract.EXPORT_API_CONTAINERS]]
        self.stack = self.group(self.proxy, self.apis)

    @staticmethod
    def group(proxy: Container | None, apis: list[Container]) -> dict[str, Container]:
        api_roles = {f"api-{i}": api for i, api in enumerate(apis, 1)}
        return {"proxy": proxy, **api_roles} if proxy else api_roles

    def api(self, what: str, like: Container, environment: dict[str, str]) -> Container:
        """An API container run as the stack's `like` is, with `environment` on top."""
        image = like.attrs["Image"]
        probe = engine.image_probe(self.client, image)
        environment = {**_environment(like), **environment}
        options = {"network": _network(like), "environment": environment, **API_OPTIONS}
        return engine.start(self.client, self.run, what, image, probe=probe, **options)

    def proxy_for(self, what: str, apis: list[Container], conf: str, **kw: Any) -> Container:
        """A proxy run as the stack's is, in front of `apis`, with `conf` as its nginx.conf;
        kw: more container options, or overrides (sysctls)."""
        self.proxy.reload()
        sysctls = dict(self.proxy.attrs["HostConfig"].get("Sysctls") or {}) or None
        upstreams = []
        for api in apis:
            api.reload()
            (network,) = api.attrs["NetworkSettings"]["Networks"].values()
            upstreams.append(f"{network['IPAddress']}:{contract.API_PORT}")
        environment = {"API_UPSTREAM": ",".join(upstreams), "RATE_LIMIT_RPS": "0"}
        options = {"sysctls": sysctls, **PROXY_OPTIONS, "environment": environment, **kw}
        image, network = self.proxy.attrs["Image"], _network(self.proxy)
        return _nginx(self.client, self.run, what, image, conf, network=network, **options)

    def systems(self, api_image: str, nginx_image: str) -> dict[str, dict[str, Container]]:
        """The groups SCENARIOS load, ready: the stack; the original post's setup (gunicorn's
        defaults behind an untuned nginx) and nginx's fixed-response ceiling on a network of
        the run's; one API container with all the gunicorn workers of the stack's (same threads
        each): the API capacity the proxy fronts."""
        client, run = self.client, self.run
        network = client.networks.create(run.name("net"), driver="bridge", labels=run.labels).name
        api_options = {"probe": engine.image_probe(client, api_image), "network": network}
        api_options |= {"aliases": [contract.API_ALIAS], "command": BASELINE_COMMAND}
        nginx_options = {"network": network, "command": ["nginx", "-g", "daemon off;"]}
        api = engine.start(client, run, "baseline-api", api_image, **api_options)
        engine.wait_ready(api)
        # The proxy's base image, with a conf of bench/nginx/.
        nginx, ceiling = (
            _nginx(client, run, what, nginx_image, conf.read_text(), **nginx_options)
            for what, conf in (("baseline-nginx", BASELINE_CONF), ("ceiling", CEILING_CONF))
        )
        workers = int(_environment(self.apis[0]).get("WEB_CONCURRENCY", "1")) * len(self.apis)
        capacity = self.api("api-capacity", self.apis[0], {"WEB_CONCURRENCY": str(workers)})
        engine.wait_ready(nginx, api, ceiling, capacity)
        groups = {"capacity": {"api": capacity}, "baseline": {"nginx": nginx, "api": api}}
        return {"stack": self.stack, **groups, "ceiling": {"nginx": ceiling}}

    def remove(self, groups: list[dict[str, Container]]) -> None:
        """Every container of `groups` that is not the stack's."""
        stack = {container.id for container in self.stack.values()}
        for container in {c.id: c for group in groups for c in group.values()}.values():
            if container.id not in stack:
                container.remove(force=True)


def measure_load(
    servers: Servers, exports: dict[str, Any], nginx_image: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every scenario at every concurrency: what each scenario is, and its figures."""
    groups = servers.systems(exports[contract.EXPORT_API_IMAGE], nginx_image)
    counts = {
        "workers": _environment(groups["capacity"]["api"])["WEB_CONCURRENCY"],
        "apis": len(servers.apis),
    }
    targets = {s.key: target(s, groups[s.system], exports[contract.EXPORT_URL]) for s in SCENARIOS}
    timing = servers.run.timing
    figures = load.measure(
        targets, timing.concurrencies, timing.warmup_s, timing.duration_s, timing.runs
    )
    servers.remove(list(groups.values()))
    return {s.key: {"title": s.title, "how": s.how.format(**counts)} for s in SCENARIOS}, figures


def measure_setups(servers: Servers) -> dict[str, Any]:
    """Each setup of SETUPS through its own proxy, at the highest concurrency."""
    groups: dict[str, dict[str, Container]] = {}
    for setup in SETUPS:
        apis = servers.apis
        if setup.api_environment:
            apis = [
                servers.api(f"{setup.key}-api-{i}", api, setup.api_environment)
                for i, api in enumerate(apis, 1)
            ]
            engine.wait_ready(*apis)
        proxy = servers.proxy_for(f"{setup.key}-proxy", apis, nginx_conf(setup))
        groups[setup.key] = servers.group(proxy, apis)
    engine.wait_ready(*[group["proxy"] for group in groups.values()])
    targets = {key: target(THROUGH_PROXY, group) for key, group in groups.items()}
    timing = servers.run.timing
    c = max(timing.concurrencies)
    measured = load.measure(
        targets, (c,), timing.warmup_s, timing.sweep_duration_s, timing.sweep_runs
    )
    servers.remove(list(groups.values()))
    rows = [{**vars(setup), **measured[setup.key][str(c)]} for setup in SETUPS]
    return {
        "concurrency": c,
        "setups": [{k: v for k, v in row.items() if k != "conf"} for row in rows],
    }


def measure_sustained(servers: Servers) -> dict[str, Any]:
    """Load through a proxy without a pause, in consecutive segments: the stack's proxy as
    deployed, then the same proxy image in front of the same API containers with the other
    net.ipv4.tcp_tw_reuse (1: source ports in TIME_WAIT reusable; 2, the kernel's default:
    only on loopback)."""
    servers.proxy.reload()
    sysctls = dict(servers.proxy.attrs["HostConfig"].get("Sysctls") or {})
    reuse = {"stack": sysctls.get(TW_REUSE, KERNEL_TW_REUSE)}
    reuse["compare"] = KERNEL_TW_REUSE if reuse["stack"] == "1" else "1"
    timing = servers.run.timing
    sustained = (max(timing.concurrencies), timing.sustained_s, timing.sustained_segments)
    series = {"stack": load.series("stack", target(THROUGH_PROXY, servers.stack), *sustained)}
    other_sysctls = {**sysctls, TW_REUSE: reuse["compare"]}
    other = servers.proxy_for(
        "tw-reuse", servers.apis, nginx_conf(SETUPS[0]), sysctls=other_sysctls
    )
    engine.wait_ready(other)
    compare = target(THROUGH_PROXY, servers.group(other, servers.apis))
    series["compare"] = load.series(f"tw_reuse={reuse['compare']}", compare, *sustained)
    other.remove(force=True)
    return {
        "concurrency": sustained[0],
        "segment_s": timing.sustained_s,
        "source_ports": SOURCE_PORTS * len(servers.apis),
        "tw_reuse": reuse,
        "series": series,
    }
