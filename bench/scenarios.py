"""The servers the rows of scenarios.toml load beside each stack, and the phases loading them."""

import copy
import io
import json
import tarfile
import time
from pathlib import Path
from typing import Any, Final

import docker
from docker.models.containers import Container

import contract
from bench import load
from bench.config import MAIN_STACK, PATH, REPO_ROOT, STACKS, TABLES, BenchError, Run, rows

NGINX_DIR: Final = Path(__file__).resolve().parent / "nginx"
PROXY_CONF, TLS_CONF = (REPO_ROOT / "proxy" / name for name in ("nginx.conf", "tls.conf"))
SCENARIOS: Final = rows("scenario", "key", "title", "how", "system")
SETUPS: Final = rows("setup", "key", "title")
THROUGH_PROXY: Final = TABLES["optional"]["scenario"] | TABLES["through_proxy"]
# The stack proxy's TLS variables, by prefix: the proxies the bench starts copy them (unless plain).
TLS_ENVIRONMENT: Final = ("TLS_", "HSTS", "PUBLIC_HOST")
# gunicorn as the original post ran it: its own defaults (one sync worker, no access log).
BASELINE_COMMAND: Final = ["gunicorn", "-c", "/dev/null", "--bind", "0.0.0.0:8000", "wsgi:app"]
BASELINE_ENVIRONMENT: Final = {"API_HEALTH_PATH": "/"}  # the app alone: ready once / answers
NGINX_COMMAND: Final = ["nginx", "-g", "daemon off;"]  # the bench's own nginx: the baseline's
# What `ready` runs in a container the bench starts, which has no periodic health check (see
# bench/README.md): its image's HEALTHCHECK test; for nginx, GET / (no curl there: bash).
PROBE_LABEL: Final = "pulumi-flask-rebar.bench.probe"
NGINX_PROBE: Final = """exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET / HTTP/1.0\\r\\n\\r\\n' >&3 \
&& read -r _ status _ <&3 && [ "$status" = 200 ]"""
Group = dict[str, Container]  # a group of containers by role
Files = dict[str, str]  # files of a container's /etc/nginx by name: their text


def edited(path: Path, replacements: dict[str, str]) -> str:
    """The text of `path` with each `old` line replaced by `new` (each there once)."""
    text = path.read_text()
    for old, new in replacements.items():
        if text.count(old) != 1:
            raise ValueError(f"proxy/{path.name} has {text.count(old)} copies of {old!r}, not 1")
        text = text.replace(old, new)
    return text


def proxy_files(setup: dict[str, Any]) -> Files:
    """The nginx.conf of a setup's proxy: proxy/nginx.conf as it changes it, or bench/nginx/'s."""
    if setup["conf"]:
        return {"nginx.conf": (NGINX_DIR / setup["conf"]).read_text()}
    return {"nginx.conf": edited(PROXY_CONF, setup["replacements"])}


def target(
    scenario: dict[str, Any], group: Group, url: str = "", warmup: tuple[int, int] = (0, 1)
) -> load.Target:
    """Where a scenario sends its load, `group` being its system's containers by role."""
    options = (tuple(scenario["headers"]), tuple(scenario["concurrencies"]), warmup)
    if not scenario["enter"]:  # the stack's published URL, from the host
        return load.Target(url + PATH, None, group, *options)
    entered = group[scenario["enter"]]
    accounted = {scenario["enter"]: entered} if scenario["alone"] else group
    url = f"{scenario['scheme']}://127.0.0.1:{scenario['port']}{PATH}"
    entered.reload()  # its main process: its network namespace is the container's
    return load.Target(url, int(entered.attrs["State"]["Pid"]), accounted, *options)


def environment(container: Container) -> dict[str, str]:
    container.reload()
    return dict(entry.split("=", 1) for entry in container.attrs["Config"]["Env"])


def group(proxy: Container, apis: list[Container]) -> Group:
    return {"proxy": proxy, **{f"api-{i}": api for i, api in enumerate(apis, 1)}}


class Servers:
    """A stack's containers, and those the bench `started` beside them, run as the stack's."""

    def __init__(
        self, client: docker.DockerClient, run: Run, key: str, exports: dict[str, Any], nginx: str
    ) -> None:
        self.client, self.run, self.key, self.nginx_image = client, run, key, nginx
        settle = STACKS[key]["warm_until_stable"]  # then the run's most warm-up runs, else one
        self.warmup = (run.timing.warmup_s, run.timing.settle_runs if settle else 1)
        self.url = exports[contract.EXPORT_URL]
        self.proxy = client.containers.get(exports[contract.EXPORT_PROXY_CONTAINER])
        self.apis = [client.containers.get(n) for n in exports[contract.EXPORT_API_CONTAINERS]]
        self.stack = group(self.proxy, self.apis)
        self.workers = int(environment(self.apis[0])["WEB_CONCURRENCY"]) * len(self.apis)
        self.started: list[Container] = []

    def start(self, what: str, image: str, probe: list[str], **options: Any) -> Container:
        """Start a container labelled with `probe`; `files`: its Files."""
        aliases, files = options.pop("aliases", None), options.pop("files", {})
        endpoint = self.client.api.create_endpoint_config(aliases=aliases)
        container = self.client.containers.create(
            image,
            name=self.run.name(f"{self.key}-{what}"),
            labels={**self.run.labels, PROBE_LABEL: json.dumps(probe)},
            networking_config={options["network"]: endpoint},
            healthcheck={"test": ["NONE"]},
            **options,
        )
        if files:  # put in before nginx starts
            archive = io.BytesIO()
            with tarfile.open(fileobj=archive, mode="w") as tar:
                for name, text in files.items():
                    info, data = tarfile.TarInfo(name), text.encode()
                    info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
                    tar.addfile(info, io.BytesIO(data))
            container.put_archive("/etc/nginx", archive.getvalue())
        container.start()
        self.started.append(container)
        return container

    def like(self, container: Container, what: str, **options: Any) -> Container:
        """A container of `container`'s image and network (unless `options` say), probed so."""
        (network,) = container.attrs["NetworkSettings"]["Networks"]
        image = container.attrs["Image"]
        kind, *test = self.client.images.get(image).attrs["Config"]["Healthcheck"]["Test"]
        probe = ["/bin/sh", "-c", test[0]] if kind == "CMD-SHELL" else test
        return self.start(what, image, probe, **{"network": network} | options)

    def api(self, what: str, like: Container, changes: dict[str, str]) -> Container:
        """An API container as `like` with `changes` (none: `like`), memory scaled to workers."""
        if not changes:
            return like
        deployed = environment(like)
        variables = deployed | changes
        share = int(variables["WEB_CONCURRENCY"]) / int(deployed["WEB_CONCURRENCY"])
        options = copy.deepcopy(TABLES["container"]["api"]) | {"user": contract.API_USER}
        options["mem_limit"] = int(like.attrs["HostConfig"]["Memory"] * max(share, 1))
        return self.like(like, what, environment=variables, **options)

    def proxy_for(
        self, what: str, apis: list[Container], files: Files, tls: bool = True, **sysctls: str
    ) -> Container:
        """A proxy in front of `apis` with `files`, as the stack's (its sysctls but `sysctls`)."""
        upstreams = []  # by address: bench/nginx/bare-proxy.conf's upstream has no zone
        for api in apis:
            api.reload()
            (network,) = api.attrs["NetworkSettings"]["Networks"].values()
            upstreams.append(f"{network['IPAddress']}:{contract.API_PORT}")
        variables = {"API_UPSTREAM": ",".join(upstreams), "RATE_LIMIT_RPS": "0"}
        if tls:
            deployed = environment(self.proxy)
            variables |= {k: v for k, v in deployed.items() if k.startswith(TLS_ENVIRONMENT)}
        sysctls = (self.proxy.attrs["HostConfig"].get("Sysctls") or {}) | sysctls
        options = copy.deepcopy(TABLES["container"]["proxy"]) | {"sysctls": sysctls or None}
        options |= {"user": contract.PROXY_USER, "environment": variables, "files": files}
        return self.like(self.proxy, what, **options)

    def system(self, name: str) -> Group:
        """A group of containers scenarios load; bench/README.md says what each is."""
        if name == "stack":
            return self.stack
        if name in {"plain", "no_resumption"}:  # no_resumption: a full TLS handshake each time
            tls = {"tls.conf": edited(TLS_CONF, TABLES["no_resumption"])} if name != "plain" else {}
            files = {"nginx.conf": PROXY_CONF.read_text()} | tls
            return group(self.proxy_for(name, self.apis, files, tls=name != "plain"), self.apis)
        if name == "capacity":
            return {"api": self.api(name, self.apis[0], {"WEB_CONCURRENCY": str(self.workers)})}
        network = self.run.name(f"{self.key}-{name}")
        self.client.networks.create(network, labels=self.run.labels)
        conf, probe = (NGINX_DIR / f"{name}.conf").read_text(), ["bash", "-c", NGINX_PROBE]
        nginx = {"network": network, "files": {"nginx.conf": conf}, "command": NGINX_COMMAND}
        if name == "ceiling":
            return {"nginx": self.start(name, self.nginx_image, probe, **nginx)}
        options = {"network": network, "aliases": [contract.API_ALIAS], "command": BASELINE_COMMAND}
        api = self.like(self.apis[0], f"{name}-api", environment=BASELINE_ENVIRONMENT, **options)
        return {"nginx": self.start(f"{name}-nginx", self.nginx_image, probe, **nginx), "api": api}


def measure(
    servers: dict[str, Servers], targets: dict[str, load.Target], *how: Any
) -> dict[str, Any]:
    """load.measure(targets, *how) once each container the bench started passes its probe."""
    started = [container for stack in servers.values() for container in stack.started]
    deadline = time.monotonic() + 180
    for container in started:
        probe = json.loads(container.labels[PROBE_LABEL])
        while True:
            container.reload()
            if container.status == "running" and container.exec_run(probe).exit_code == 0:
                break
            if container.status in {"exited", "dead"} or time.monotonic() > deadline:
                logs = container.logs(tail=20).decode(errors="replace")
                raise BenchError(f"{container.name} not ready ({container.status}):\n{logs}")
            time.sleep(0.25)
    try:
        return load.measure(targets, *how)
    finally:
        for container in started:
            container.remove(force=True)
        for stack in servers.values():
            stack.started.clear()


def measure_load(servers: dict[str, Servers]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every scenario at its concurrencies: what each scenario is, and its figures."""
    groups: dict[tuple[str, str], Group] = {}
    targets, described = {}, {}
    for s in SCENARIOS:
        stack, where = servers[s["stack"]], (s["stack"], s["system"])
        if where not in groups:
            groups[where] = stack.system(s["system"])
        targets[s["key"]] = target(s, groups[where], stack.url, stack.warmup)
        counts = {"workers": stack.workers, "apis": len(stack.apis)}
        described[s["key"]] = {"title": s["title"], "how": s["how"].format(**counts)}
    t = servers[MAIN_STACK].run.timing
    return described, measure(servers, targets, t.concurrencies, t.duration_s, t.runs)


def measure_setups(servers: dict[str, Servers]) -> dict[str, Any]:
    """Each setup (--quick: those marked quick) through its own proxy, at the top concurrency."""
    run, targets = servers[MAIN_STACK].run, {}
    chosen = [setup for setup in SETUPS if setup["quick"] or not run.quick]
    for setup in chosen:
        stack, key, changes = servers[setup["stack"]], setup["key"], setup["api_environment"]
        apis = [stack.api(f"{key}-api-{i}", a, changes) for i, a in enumerate(stack.apis, 1)]
        proxy = stack.proxy_for(f"{key}-proxy", apis, proxy_files(setup), **setup["sysctls"])
        targets[key] = target(THROUGH_PROXY, group(proxy, apis), warmup=stack.warmup)
    t, c = run.timing, max(run.timing.concurrencies)
    measured = measure(servers, targets, (c,), t.sweep_duration_s, t.sweep_runs)
    keep = ("key", "title", "stack", "api_environment", "replacements")
    setups = [{k: s[k] for k in keep} | measured[s["key"]][str(c)] for s in chosen]
    return {"concurrency": c, "setups": setups}


def measure_sustained(servers: Servers) -> dict[str, Any]:
    """Load through the stack's proxy as deployed, in consecutive runs without a pause."""
    t, c = servers.run.timing, max(servers.run.timing.concurrencies)
    proxied = {"stack": target(THROUGH_PROXY, servers.stack)}
    series = load.measure(proxied, (c,), t.sustained_s, t.sustained_segments)["stack"][str(c)]
    sysctls = servers.proxy.attrs["HostConfig"].get("Sysctls") or {}
    return {
        "concurrency": c,
        "segment_s": t.sustained_s,
        "tw_reuse": {"stack": sysctls.get("net.ipv4.tcp_tw_reuse", "2 (the kernel's default)")},
        "series": {"stack": series["runs"]},
    }
