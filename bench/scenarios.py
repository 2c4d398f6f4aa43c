"""The rows of scenarios.toml that load servers (the load matrix, the settings compared through
the proxy), the servers they need beside the stack, and the sustained load; bench.load
measures them all."""

import copy
import io
import json
import re
import tarfile
import time
from pathlib import Path, PurePosixPath
from typing import Any, Final

import docker
from docker.models.containers import Container

import contract
from bench import load
from bench.config import PATH, REPO_ROOT, TABLES, BenchError, Run, log, rows

NGINX_DIR: Final = Path(__file__).resolve().parent / "nginx"
# A scenario's optional fields (scenarios.toml says what each does).
OPTIONAL: Final = {"alone": False, "scheme": "http", "headers": [], "concurrencies": []}
SCENARIOS: Final = rows(
    "scenario", ("key", "title", "how", "system"), enter=None, port=0, **OPTIONAL
)
SETUPS: Final = rows("setup", ("key", "title"), api_environment={}, replacements={}, conf=None)
# The settings compared and the sustained load: wrk in the proxy's namespace, all accounted,
# over HTTPS as deployed (the proxies the bench starts get the stack's certificate).
THROUGH_PROXY: Final = {
    "enter": "proxy",
    **OPTIONAL,
    "port": contract.PROXY_HTTPS_PORT,
    "scheme": "https",
}
# The stack proxy's TLS environment, which the proxies the bench starts copy (unless plain).
TLS_ENVIRONMENT: Final = ("TLS_CERTIFICATE", "TLS_PRIVATE_KEY", "HSTS", "PUBLIC_HOST")
# Full and resumed TLS handshakes: OpenSSL's own client (`openssl s_time`), in the proxy's
# network namespace, for this long each.
HANDSHAKE_SECONDS: Final = {"full": 10, "quick": 2}
# gunicorn as the original post ran it: its own defaults (one sync worker, no access log),
# not the project's gunicorn.conf.py.
BASELINE_COMMAND: Final = ["gunicorn", "-c", "/dev/null", "--bind", "0.0.0.0:8000", "wsgi:app"]
NGINX_COMMAND: Final = ["nginx", "-g", "daemon off;"]
# Source ports nginx can use towards one upstream address (net.ipv4.ip_local_port_range,
# 32768-60999), each held for 60 s in TIME_WAIT after nginx closes a connection.
SOURCE_PORTS: Final = 60999 - 32768 + 1
TW_REUSE, KERNEL_TW_REUSE = "net.ipv4.tcp_tw_reuse", "2"
# The bench's own containers run no periodic health check: each check is a process that the
# engine starts in the container, and two dozen containers checked twice a second cost the
# engine more CPU than the load being measured. The bench runs the check itself until it
# passes (`ready`), from this label.
PROBE_LABEL: Final = "pulumi-flask-rebar.bench.probe"
# GET / answers 200 on 8080, with bash's /dev/tcp (the images have no curl).
HTTP_PROBE: Final = [
    "bash",
    "-c",
    "exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET / HTTP/1.0\\r\\n\\r\\n' >&3"
    ' && read -r _ status _ <&3 && [ "$status" = 200 ]',
]


def nginx_conf(setup: dict[str, Any]) -> str:
    """proxy/nginx.conf with each `old` line replaced by `new`, or a file of bench/nginx/."""
    if setup["conf"]:
        return (NGINX_DIR / setup["conf"]).read_text()
    text = (REPO_ROOT / "proxy" / "nginx.conf").read_text()
    for old, new in setup["replacements"].items():
        if text.count(old) != 1:
            raise ValueError(f"proxy/nginx.conf has {text.count(old)} copies of {old!r}, not 1")
        text = text.replace(old, new)
    return text


def target(scenario: dict[str, Any], group: dict[str, Container], url: str = "") -> load.Target:
    """Where a scenario sends its load, `group` being its system's containers by role."""
    options = (tuple(scenario["headers"]), tuple(scenario["concurrencies"]))
    if scenario["enter"] is None:  # the stack's published URL, from the host
        return load.Target(url + PATH, None, group, *options)
    entered = group[scenario["enter"]]
    accounted = {scenario["enter"]: entered} if scenario["alone"] else group
    url = f"{scenario['scheme']}://127.0.0.1:{scenario['port']}{PATH}"
    entered.reload()  # its main process: its network namespace is the container's
    return load.Target(url, int(entered.attrs["State"]["Pid"]), accounted, *options)


def _environment(container: Container) -> dict[str, str]:
    container.reload()
    return dict(entry.split("=", 1) for entry in container.attrs["Config"]["Env"])


def ready(*containers: Container, timeout: float = 90.0) -> None:
    """Run each container's probe until it succeeds."""
    deadline = time.monotonic() + timeout
    for container in containers:
        probe = json.loads(container.labels[PROBE_LABEL])
        while True:
            container.reload()
            if container.status == "running" and container.exec_run(probe).exit_code == 0:
                break
            if container.status in {"exited", "dead"} or time.monotonic() > deadline:
                logs = container.logs(tail=20).decode(errors="replace")
                raise BenchError(f"{container.name} not ready ({container.status}):\n{logs}")
            time.sleep(0.25)


class Servers:
    """The stack's containers, and containers run beside them as they are run but for what a
    row changes."""

    def __init__(self, client: docker.DockerClient, run: Run, exports: dict[str, Any]) -> None:
        self.client, self.run = client, run
        self.proxy = client.containers.get(exports[contract.EXPORT_PROXY_CONTAINER])
        self.apis = [client.containers.get(n) for n in exports[contract.EXPORT_API_CONTAINERS]]
        self.stack = self.group(self.proxy, self.apis)

    @staticmethod
    def group(proxy: Container, apis: list[Container]) -> dict[str, Container]:
        return {"proxy": proxy, **{f"api-{i}": api for i, api in enumerate(apis, 1)}}

    def start(
        self,
        what: str,
        like: Container | None,
        image: str = "",
        *,
        probe: list[str],
        aliases: list[str] | None = None,
        file: tuple[str, str] | None = None,
        **options: Any,
    ) -> Container:
        """Create (never pull) a container of `image`, or of the stack's container `like`'s
        image on its network; labelled with the run and with `probe`, the command that succeeds
        once it serves; put `file` (path, text) in; start it (not yet ready)."""
        if like is not None:
            like.reload()
            (network,) = like.attrs["NetworkSettings"]["Networks"]
            image, options = like.attrs["Image"], {"network": network, **options}
        endpoint = self.client.api.create_endpoint_config(aliases=aliases)
        container = self.client.containers.create(
            image,
            name=self.run.name(what),
            labels={**self.run.labels, PROBE_LABEL: json.dumps(probe)},
            detach=True,
            networking_config={options["network"]: endpoint},
            healthcheck={"test": ["NONE"]},
            **options,
        )
        if file:
            path, data = PurePosixPath(file[0]), file[1].encode()
            info = tarfile.TarInfo(path.name)
            info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
            archive = io.BytesIO()
            with tarfile.open(fileobj=archive, mode="w") as tar:
                tar.addfile(info, io.BytesIO(data))
            container.put_archive(str(path.parent), archive.getvalue())
        container.start()
        return container

    def probe(self, image: str) -> list[str]:
        """The image's own HEALTHCHECK test, as a command to run in the container."""
        kind, *command = self.client.images.get(image).attrs["Config"]["Healthcheck"]["Test"]
        return ["/bin/sh", "-c", command[0]] if kind == "CMD-SHELL" else command

    def api(self, what: str, like: Container, environment: dict[str, str]) -> Container:
        """An API container run as the stack's `like` is, with `environment` on top."""
        environment = {**_environment(like), **environment}
        options = copy.deepcopy(TABLES["container"]["api"]) | {"user": contract.API_USER}
        probe = self.probe(like.attrs["Image"])
        return self.start(what, like, environment=environment, probe=probe, **options)

    def nginx(
        self,
        what: str,
        conf: str,
        like: Container | None,
        probe: list[str] = HTTP_PROBE,
        **options: Any,
    ) -> Container:
        """nginx with `conf` as its nginx.conf (put in before it starts), serving on 8080."""
        file = ("/etc/nginx/nginx.conf", conf)
        return self.start(what, like, file=file, probe=probe, **options)

    def proxy_for(
        self, what: str, apis: list[Container], conf: str, tls: bool = True, **options: Any
    ) -> Container:
        """A proxy run as the stack's is (sysctls and, unless not `tls`, its certificate
        included), in front of `apis`; options: more container options, or overrides."""
        self.proxy.reload()
        sysctls = dict(self.proxy.attrs["HostConfig"].get("Sysctls") or {}) or None
        upstreams = []
        for api in apis:
            api.reload()
            (network,) = api.attrs["NetworkSettings"]["Networks"].values()
            upstreams.append(f"{network['IPAddress']}:{contract.API_PORT}")
        environment = {"API_UPSTREAM": ",".join(upstreams), "RATE_LIMIT_RPS": "0"}
        stack_environment = _environment(self.proxy)
        if tls:
            environment |= {
                k: stack_environment[k] for k in TLS_ENVIRONMENT if k in stack_environment
            }
        options = copy.deepcopy({"sysctls": sysctls, **TABLES["container"]["proxy"], **options})
        options |= {"user": contract.PROXY_USER, "environment": environment}
        probe = self.probe(self.proxy.attrs["Image"])  # its /healthz, on 8080 either way
        return self.nginx(what, conf, self.proxy, probe, **options)

    def systems(self, api_image: str, nginx_image: str) -> dict[str, dict[str, Container]]:
        """The groups SCENARIOS load, ready: the stack; the original post's setup (gunicorn's
        defaults behind an untuned nginx) and nginx's fixed-response ceiling on a network of
        the run's; one API container with all the gunicorn workers of the stack's (same threads
        each): the API capacity the proxy fronts."""
        create = self.client.networks.create
        network = create(self.run.name("net"), driver="bridge", labels=self.run.labels).name
        options = {"probe": self.probe(api_image), "network": network}
        options |= {"aliases": [contract.API_ALIAS], "command": BASELINE_COMMAND}
        api = self.start("baseline-api", None, api_image, **options)
        ready(api)
        # The proxy's base image (nginx) with a file of bench/nginx/.
        options = {"image": nginx_image, "network": network, "command": NGINX_COMMAND}
        confs = {what: (NGINX_DIR / f"{what}.conf").read_text() for what in ("baseline", "ceiling")}
        nginx = self.nginx("baseline-nginx", confs["baseline"], None, **options)
        ceiling = self.nginx("ceiling", confs["ceiling"], None, **options)
        workers = int(_environment(self.apis[0]).get("WEB_CONCURRENCY", "1")) * len(self.apis)
        capacity = self.api("api-capacity", self.apis[0], {"WEB_CONCURRENCY": str(workers)})
        # The stack's proxy serving plain HTTP, in front of the same API containers.
        stack_conf = (REPO_ROOT / "proxy" / "nginx.conf").read_text()
        plain = self.proxy_for("plain-proxy", self.apis, stack_conf, tls=False)
        ready(nginx, api, ceiling, capacity, plain)
        groups = {"capacity": {"api": capacity}, "baseline": {"nginx": nginx, "api": api}}
        groups["plain"] = self.group(plain, self.apis)
        return {"stack": self.stack, **groups, "ceiling": {"nginx": ceiling}}

    def remove(self, groups: list[dict[str, Container]]) -> None:
        """Every container of `groups` that is not the stack's."""
        stack = {container.id for container in self.stack.values()}
        for container in {c.id: c for group in groups for c in group.values()}.values():
            if container.id not in stack:
                container.remove(force=True)


def measure_load(servers: Servers, exports: dict[str, Any], nginx_image: str) -> tuple[Any, Any]:
    """Every scenario at every concurrency: what each scenario is, and its figures."""
    groups = servers.systems(exports[contract.EXPORT_API_IMAGE], nginx_image)
    workers = _environment(groups["capacity"]["api"])["WEB_CONCURRENCY"]
    url = exports[contract.EXPORT_URL]
    targets = {s["key"]: target(s, groups[s["system"]], url) for s in SCENARIOS}
    t = servers.run.timing
    figures = load.measure(targets, t.concurrencies, t.warmup_s, t.duration_s, t.runs)
    servers.remove(list(groups.values()))
    counts = {"workers": workers, "apis": len(servers.apis)}
    described = {
        s["key"]: {"title": s["title"], "how": s["how"].format(**counts)} for s in SCENARIOS
    }
    return described, figures


def measure_setups(servers: Servers) -> dict[str, Any]:
    """Each setup of SETUPS through its own proxy, at the highest concurrency."""
    groups: dict[str, dict[str, Container]] = {}
    for setup in SETUPS:
        key, apis = setup["key"], servers.apis
        if setup["api_environment"]:
            apis = [
                servers.api(f"{key}-api-{i}", api, setup["api_environment"])
                for i, api in enumerate(apis, 1)
            ]
            ready(*apis)
        groups[key] = servers.group(
            servers.proxy_for(f"{key}-proxy", apis, nginx_conf(setup)), apis
        )
    ready(*[group["proxy"] for group in groups.values()])
    targets = {key: target(THROUGH_PROXY, group) for key, group in groups.items()}
    t, c = servers.run.timing, max(servers.run.timing.concurrencies)
    measured = load.measure(targets, (c,), t.warmup_s, t.sweep_duration_s, t.sweep_runs)
    servers.remove(list(groups.values()))
    described = [
        {k: s[k] for k in ("key", "title", "api_environment", "replacements")} for s in SETUPS
    ]
    return {"concurrency": c, "setups": [d | measured[d["key"]][str(c)] for d in described]}


def measure_sustained(servers: Servers) -> dict[str, Any]:
    """Load through a proxy without a pause, in consecutive runs: the stack's proxy as deployed,
    then the same proxy image in front of the same API containers with the other
    net.ipv4.tcp_tw_reuse (1: source ports in TIME_WAIT reusable; 2, the kernel's default:
    only on loopback)."""
    servers.proxy.reload()
    sysctls = dict(servers.proxy.attrs["HostConfig"].get("Sysctls") or {})
    reuse = {"stack": sysctls.get(TW_REUSE, KERNEL_TW_REUSE)}
    reuse["compare"] = KERNEL_TW_REUSE if reuse["stack"] == "1" else "1"
    t, c = servers.run.timing, max(servers.run.timing.concurrencies)

    def series(name: str, group: dict[str, Container]) -> list[dict[str, Any]]:
        segments = (c,), 0, t.sustained_s, t.sustained_segments
        return list(
            load.measure({name: target(THROUGH_PROXY, group)}, *segments)[name][str(c)]["runs"]
        )

    stack = series("sustained stack", servers.stack)
    sysctls[TW_REUSE] = reuse["compare"]
    other = servers.proxy_for("tw-reuse", servers.apis, nginx_conf(SETUPS[0]), sysctls=sysctls)
    ready(other)
    compare = series(f"sustained tw_reuse={reuse['compare']}", servers.group(other, servers.apis))
    other.remove(force=True)
    return {
        "concurrency": c,
        "segment_s": t.sustained_s,
        "source_ports": SOURCE_PORTS * len(servers.apis),
        "tw_reuse": reuse,
        "series": {"stack": stack, "compare": compare},
    }


def measure_handshakes(servers: Servers) -> dict[str, Any]:
    """New TLS connections per second to the stack's proxy, each a full handshake or one that
    resumes the session of the first (`openssl s_time -new` / `-reuse`: one client, one
    connection at a time, GET / on each), and the proxy's CPU per connection meanwhile."""
    servers.proxy.reload()
    pid = int(servers.proxy.attrs["State"]["Pid"])
    seconds = HANDSHAKE_SECONDS["quick" if servers.run.quick else "full"]
    figures: dict[str, Any] = {"seconds": seconds, "client": "openssl s_time"}
    for kind, flag in (("full", "-new"), ("resumed", "-reuse")):
        address = f"127.0.0.1:{contract.PROXY_HTTPS_PORT}"
        command = ["openssl", "s_time", "-connect", address, "-www", "/", flag]
        before = load.cpu_sample({"proxy": servers.proxy})
        done = load.in_netns(pid, [*command, "-time", str(seconds)], timeout=seconds + 60)
        after = load.cpu_sample({"proxy": servers.proxy})
        proxy_s = load.cpu_usage(before, after)["proxy"] * (after["wall"] - before["wall"])
        match = re.search(r"(\d+) connections in (\d+) real seconds", done.stdout)
        if match is None:
            raise BenchError(f"openssl s_time {flag}: {done.stdout[-500:]}{done.stderr[-500:]}")
        connections = int(match.group(1))
        figures[kind] = {
            "connections": connections,
            "per_second": round(connections / int(match.group(2)), 1),
            "proxy_cpu_us": round(proxy_s * 1e6 / max(connections, 1), 1),
        }
        log(f"handshakes {kind}: {figures[kind]}")
    return figures
