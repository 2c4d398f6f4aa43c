"""What is measured: the scenarios of the load matrix, the setups compared through the proxy
and the sustained load, each set up and then measured by bench.load."""

from typing import Any, Final

import docker
from docker.models.containers import Container

import contract
from bench import engine, load, nginx_configs, servers, wrk
from bench.config import PATH, Run, Timing

# Setups measured through the proxy at the highest concurrency: the stack as deployed, then one
# change each. API changes run new API containers (as many as the stack's) behind a new proxy.
LOG_LINE = "access_log /dev/stdout json_timed buffer=32k flush=1s;"
SETUPS: Final = (
    servers.Setup("deployed", "as deployed: 2 API containers x 1 worker x 4 threads"),
    servers.Setup("api-2x4", "API: 2 workers x 4 threads each", {"WEB_CONCURRENCY": "2"}),
    servers.Setup("api-1x8", "API: 1 worker x 8 threads each", {"GUNICORN_THREADS": "8"}),
    servers.Setup("api-1x1", "API: 1 worker x 1 thread each (gthread)", {"GUNICORN_THREADS": "1"}),
    servers.Setup(
        "api-sync",
        "API: 1 sync worker each (no keep-alive: a connection per request)",
        {"GUNICORN_WORKER_CLASS": "sync", "GUNICORN_THREADS": "1"},
    ),
    servers.Setup("api-access-log", "API: gunicorn access log on", {"GUNICORN_ACCESS_LOG": "on"}),
    servers.Setup(
        "proxy-no-keepalive",
        "proxy: no upstream keep-alive (`Connection: close`, a connection per request)",
        replacements={
            "keepalive 64;": "# no keep-alive pool",
            'proxy_set_header Connection "";': 'proxy_set_header Connection "close";',
        },
    ),
    servers.Setup(
        "proxy-no-buffering",
        "proxy: responses not buffered (`proxy_buffering off`)",
        replacements={"proxy_buffering on;": "proxy_buffering off;"},
    ),
    servers.Setup(
        "proxy-log-unbuffered",
        "proxy: access log written line by line (no buffer)",
        replacements={LOG_LINE: "access_log /dev/stdout json_timed;"},
    ),
    servers.Setup(
        "proxy-log-off", "proxy: no access log", replacements={LOG_LINE: "access_log off;"}
    ),
    servers.Setup(
        "proxy-bare",
        "proxy: bare nginx (the upstream pool and proxy_pass only: no log, headers or checks)",
        conf=nginx_configs.BARE_PROXY,
    ),
)
# Source ports nginx can use towards one upstream address (net.ipv4.ip_local_port_range,
# 32768-60999), each held for 60 s in TIME_WAIT after nginx closes a connection.
SOURCE_PORTS: Final = 60999 - 32768 + 1
TW_REUSE: Final = "net.ipv4.tcp_tw_reuse"
KERNEL_TW_REUSE: Final = "2"


def _netns_target(container: Container, port: int, containers: dict[str, Any]) -> wrk.Target:
    return wrk.Target(f"http://127.0.0.1:{port}{PATH}", engine.netns_pid(container), containers)


def stack_containers(
    client: docker.DockerClient, exports: dict[str, Any]
) -> tuple[Container, list[Container]]:
    """The stack's proxy and API containers."""
    proxy = client.containers.get(exports[contract.EXPORT_PROXY_CONTAINER])
    apis = [client.containers.get(name) for name in exports[contract.EXPORT_API_CONTAINERS]]
    return proxy, apis


def _by_role(proxy: Container, apis: list[Container]) -> dict[str, Container]:
    return {"proxy": proxy, **{f"api-{i}": api for i, api in enumerate(apis, 1)}}


def start_api_at_capacity(
    client: docker.DockerClient, run: Run, apis: list[Container]
) -> Container:
    """One API container with all the gunicorn workers of the stack's API containers (same
    threads each): the API capacity the proxy fronts, without the proxy."""
    workers = int(servers.container_environment(apis[0]).get("WEB_CONCURRENCY", "1"))
    total = str(workers * len(apis))
    return servers.start_api(client, run, "api-capacity", apis[0], {"WEB_CONCURRENCY": total})


def stack_scenarios(
    client: docker.DockerClient,
    exports: dict[str, Any],
    capacity: Container,
    baseline: dict[str, Container],
    ceiling: Container,
) -> list[load.Scenario]:
    proxy, apis = stack_containers(client, exports)
    stack = _by_role(proxy, apis)
    workers = servers.container_environment(capacity)["WEB_CONCURRENCY"]
    return [
        load.Scenario(
            "proxied",
            "ours, through the proxy",
            "the stack as deployed (dev config, 2 API containers): wrk in the proxy"
            " container's network namespace, 127.0.0.1:8080",
            _netns_target(proxy, contract.PROXY_CONTAINER_PORT, stack),
        ),
        load.Scenario(
            "published",
            "ours, published port",
            "the same stack from the host through its published port (docker-proxy included)",
            wrk.Target(exports[contract.EXPORT_URL] + PATH, None, stack),
        ),
        load.Scenario(
            "direct",
            "ours, API direct at the stack's capacity",
            f"one API container with all {workers} gunicorn workers of the stack's"
            f" {len(apis)} API containers (the image and settings of theirs), no proxy: wrk in"
            " its network namespace, 127.0.0.1:8000 (HTTP keep-alive). The proxy's overhead is"
            " measured against this: the same API capacity without the proxy",
            _netns_target(capacity, contract.API_PORT, {"api": capacity}),
        ),
        load.Scenario(
            "direct_one",
            "ours, one API container direct",
            f"one of the stack's API containers as deployed ({len(apis)} share the load behind"
            " the proxy), no proxy: wrk in its network namespace, 127.0.0.1:8000",
            _netns_target(apis[0], contract.API_PORT, {"api-1": apis[0]}),
        ),
        load.Scenario(
            "baseline",
            "original post (baseline)",
            "the same API image run with gunicorn's defaults (gunicorn -c /dev/null: one sync"
            " worker) behind nginx with a default proxy_pass and no tuning",
            _netns_target(baseline["nginx"], servers.NGINX_PORT, baseline),
        ),
        load.Scenario(
            "baseline_api",
            "original post's gunicorn alone",
            "the original post's gunicorn as above (one sync worker, which closes each"
            " connection), loaded directly with no nginx in front: an upper bound for the"
            " original post's setup, whose nginx only adds work on the same cores",
            _netns_target(baseline["api"], contract.API_PORT, {"api": baseline["api"]}),
        ),
        load.Scenario(
            "ceiling",
            "ceiling: nginx fixed response",
            "nginx answering the same JSON body itself (return 200), no upstream, no log",
            _netns_target(ceiling, servers.NGINX_PORT, {"nginx": ceiling}),
        ),
    ]


def measure_setups(
    client: docker.DockerClient, run: Run, exports: dict[str, Any], timing: Timing
) -> dict[str, Any]:
    """Each setup of SETUPS through its own proxy, at the highest concurrency."""
    proxy, apis = stack_containers(client, exports)
    started: dict[str, dict[str, Container]] = {}
    for setup in SETUPS:
        setup_apis = apis
        if setup.api_environment:
            setup_apis = [
                servers.start_api(client, run, f"{setup.key}-api-{i}", api, setup.api_environment)
                for i, api in enumerate(apis, 1)
            ]
            engine.wait_ready(*setup_apis)
        setup_proxy = servers.start_proxy(
            client, run, f"{setup.key}-proxy", proxy, setup_apis, setup.replacements, setup.conf
        )
        started[setup.key] = _by_role(setup_proxy, setup_apis)
    engine.wait_ready(*[containers["proxy"] for containers in started.values()])
    scenarios = [
        load.Scenario(
            setup.key,
            setup.title,
            "",
            _netns_target(
                started[setup.key]["proxy"], contract.PROXY_CONTAINER_PORT, started[setup.key]
            ),
        )
        for setup in SETUPS
    ]
    concurrency = max(timing.concurrencies)
    measured = load.measure(
        scenarios, (concurrency,), timing, seconds=timing.sweep_duration_s, runs=timing.sweep_runs
    )
    stack_ids = {container.id for container in [proxy, *apis]}
    for containers in started.values():
        for container in containers.values():
            if container.id not in stack_ids:
                container.remove(force=True)
    return {
        "concurrency": concurrency,
        "setups": [
            {
                "key": setup.key,
                "title": setup.title,
                "api_environment": setup.api_environment,
                "replacements": setup.replacements,
                **measured[setup.key][str(concurrency)],
            }
            for setup in SETUPS
        ],
    }


def _series(target: wrk.Target, timing: Timing, name: str) -> list[dict[str, Any]]:
    segments = []
    for index in range(timing.sustained_segments):
        segment = wrk.run(target, max(timing.concurrencies), timing.sustained_s)
        segments.append(segment.to_dict())
        load.log(
            f"sustained {name} {index + 1}/{timing.sustained_segments}: {segment.rps:.0f} req/s,"
            f" proxy {segment.cpu_us_per_request.get('proxy', 0):.0f} µs/req,"
            f" errors {segment.errors}, TIME_WAIT {segment.time_wait_after}"
        )
    return segments


def proxy_sysctls(proxy: Container) -> dict[str, str]:
    """The namespaced sysctls the stack gives its proxy container."""
    proxy.reload()
    return dict(proxy.attrs["HostConfig"].get("Sysctls") or {})


def measure_sustained(
    client: docker.DockerClient, run: Run, exports: dict[str, Any], timing: Timing
) -> dict[str, Any]:
    """Load through a proxy without a pause, in consecutive segments: the stack's proxy as
    deployed, then the same proxy image in front of the same API containers with the other
    net.ipv4.tcp_tw_reuse (1: source ports in TIME_WAIT reusable; 2, the kernel's default:
    only on loopback)."""
    proxy, apis = stack_containers(client, exports)
    port = contract.PROXY_CONTAINER_PORT
    sysctls = proxy_sysctls(proxy)
    stack_reuse = sysctls.get(TW_REUSE, KERNEL_TW_REUSE)
    other_reuse = KERNEL_TW_REUSE if stack_reuse == "1" else "1"
    series = {"stack": _series(_netns_target(proxy, port, _by_role(proxy, apis)), timing, "stack")}
    other = servers.start_proxy(
        client, run, "tw-reuse", proxy, apis, sysctls={**sysctls, TW_REUSE: other_reuse}
    )
    engine.wait_ready(other)
    series["compare"] = _series(
        _netns_target(other, port, _by_role(other, apis)), timing, f"tw_reuse={other_reuse}"
    )
    other.remove(force=True)
    return {
        "concurrency": max(timing.concurrencies),
        "segment_s": timing.sustained_s,
        "source_ports": SOURCE_PORTS * len(apis),
        "tw_reuse": {"stack": stack_reuse, "compare": other_reuse},
        "series": series,
    }
