"""What is measured: the scenarios of the load matrix, the worker sweep and the proxy variants,
each set up and then measured by bench.load."""

from typing import Any, Final

import docker
from docker.models.containers import Container

import contract
from bench import engine, load, servers, wrk
from bench.config import PATH, Run, Timing

# The worker sweep's two client behaviours: wrk's own (HTTP/1.1 keep-alive), and a new
# connection per request, which is how the proxy connects to an API container (no upstream
# keep-alive pool: see results.md).
SWEEP_MODES: Final = {"keepalive": (), "new_connection": ("Connection: close",)}

# Variants of proxy/nginx.conf, measured against the file as shipped.
PROXY_VARIANTS: Final = (
    servers.ProxyVariant("shipped", "proxy/nginx.conf as shipped"),
    servers.ProxyVariant(
        "upstream-keepalive-header",
        'upstream `Connection: ""` (before: the API keeps each connection open until nginx'
        " closes it)",
        {'proxy_set_header Connection "close";': 'proxy_set_header Connection "";'},
    ),
    servers.ProxyVariant(
        "access-log-buffered",
        "access log written in 64k batches (`buffer=64k flush=1s`)",
        {
            "access_log /dev/stdout json_timed;": (
                "access_log /dev/stdout json_timed buffer=64k flush=1s;"
            )
        },
    ),
    servers.ProxyVariant(
        "access-log-off",
        "no proxy access log (the cost of the JSON log line)",
        {"access_log /dev/stdout json_timed;": "access_log off;"},
    ),
)
# Source ports nginx can use towards one upstream address (net.ipv4.ip_local_port_range,
# 32768-60999), each held for 60 s in TIME_WAIT after nginx closes a connection.
SOURCE_PORTS: Final = 60999 - 32768 + 1
TW_REUSE: Final = "net.ipv4.tcp_tw_reuse"
KERNEL_TW_REUSE: Final = "2"


def _netns_target(container: Container, port: int, containers: dict[str, Any]) -> wrk.Target:
    return wrk.Target(f"http://127.0.0.1:{port}{PATH}", engine.netns_pid(container), containers)


def stack_scenarios(
    client: docker.DockerClient,
    exports: dict[str, Any],
    baseline: dict[str, Container],
    ceiling: Container,
) -> list[load.Scenario]:
    proxy = client.containers.get(exports[contract.EXPORT_PROXY_CONTAINER])
    apis = [client.containers.get(name) for name in exports[contract.EXPORT_API_CONTAINERS]]
    stack = {"proxy": proxy, **{f"api-{i}": api for i, api in enumerate(apis, 1)}}
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
            "ours, one API container direct",
            "one of the stack's API containers, no proxy: wrk in its network namespace,"
            " 127.0.0.1:8000 (HTTP keep-alive)",
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
            "ceiling",
            "ceiling: nginx fixed response",
            "nginx answering the same JSON body itself (return 200), no upstream, no log",
            _netns_target(ceiling, servers.NGINX_PORT, {"nginx": ceiling}),
        ),
    ]


def measure_sweep(
    client: docker.DockerClient, run: Run, network: str, api_image: str, timing: Timing
) -> dict[str, Any]:
    """Each worker configuration in one API container, loaded directly at the highest
    concurrency, with keep-alive and with a new connection per request."""
    containers = {
        config.key: servers.start_api(
            client, run, f"sweep-{config.key}", api_image, network, config
        )
        for config in servers.WORKER_CONFIGS
    }
    engine.wait_healthy(*containers.values())
    scenarios = [
        load.Scenario(
            f"{config.key}/{mode}",
            config.title,
            mode,
            _netns_target(
                containers[config.key], contract.API_PORT, {"api": containers[config.key]}
            ),
            headers,
        )
        for config in servers.WORKER_CONFIGS
        for mode, headers in SWEEP_MODES.items()
    ]
    concurrency = max(timing.concurrencies)
    measured = load.measure(
        scenarios, (concurrency,), timing, seconds=timing.sweep_duration_s, runs=timing.sweep_runs
    )
    for container in containers.values():
        container.remove(force=True)
    return {
        "concurrency": concurrency,
        "configs": [
            {
                "key": config.key,
                "title": config.title,
                "environment": config.environment,
                "command": config.command,
                **{
                    mode: measured[f"{config.key}/{mode}"][str(concurrency)] for mode in SWEEP_MODES
                },
            }
            for config in servers.WORKER_CONFIGS
        ],
    }


def measure_proxy_variants(
    client: docker.DockerClient, run: Run, exports: dict[str, Any], timing: Timing
) -> dict[str, Any]:
    """Variants of the project's proxy config in front of the stack's API containers."""
    proxy_image = exports[contract.EXPORT_PROXY_IMAGE]
    network = exports[contract.EXPORT_NETWORK]
    apis = {
        f"api-{i}": client.containers.get(name)
        for i, name in enumerate(exports[contract.EXPORT_API_CONTAINERS], 1)
    }
    # The stack's own proxy sysctls, so that each variant differs from it by its config only.
    sysctls = proxy_sysctls(client.containers.get(exports[contract.EXPORT_PROXY_CONTAINER]))
    containers = {
        variant.key: servers.start_proxy_variant(
            client, run, network, proxy_image, variant, sysctls=sysctls or None
        )
        for variant in PROXY_VARIANTS
    }
    engine.wait_healthy(*containers.values())
    scenarios = [
        load.Scenario(
            variant.key,
            variant.title,
            "",
            _netns_target(
                containers[variant.key],
                contract.PROXY_CONTAINER_PORT,
                {"proxy": containers[variant.key], **apis},
            ),
        )
        for variant in PROXY_VARIANTS
    ]
    concurrency = max(timing.concurrencies)
    measured = load.measure(
        scenarios, (concurrency,), timing, seconds=timing.sweep_duration_s, runs=timing.sweep_runs
    )
    for container in containers.values():
        container.remove(force=True)
    return {
        "concurrency": concurrency,
        "variants": [
            {
                "key": variant.key,
                "title": variant.title,
                "replacements": variant.replacements,
                **measured[variant.key][str(concurrency)],
            }
            for variant in PROXY_VARIANTS
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
    proxy = client.containers.get(exports[contract.EXPORT_PROXY_CONTAINER])
    apis = {
        f"api-{i}": client.containers.get(name)
        for i, name in enumerate(exports[contract.EXPORT_API_CONTAINERS], 1)
    }
    port = contract.PROXY_CONTAINER_PORT
    sysctls = proxy_sysctls(proxy)
    stack_reuse = sysctls.get(TW_REUSE, KERNEL_TW_REUSE)
    other_reuse = KERNEL_TW_REUSE if stack_reuse == "1" else "1"
    series = {
        "stack": _series(_netns_target(proxy, port, {"proxy": proxy, **apis}), timing, "stack")
    }
    other = servers.start_proxy_variant(
        client,
        run,
        exports[contract.EXPORT_NETWORK],
        exports[contract.EXPORT_PROXY_IMAGE],
        servers.ProxyVariant("tw-reuse", f"the stack's proxy with {TW_REUSE}={other_reuse}"),
        sysctls={**sysctls, TW_REUSE: other_reuse},
    )
    engine.wait_healthy(other)
    series["compare"] = _series(
        _netns_target(other, port, {"proxy": other, **apis}), timing, f"tw_reuse={other_reuse}"
    )
    other.remove(force=True)
    return {
        "concurrency": max(timing.concurrencies),
        "segment_s": timing.sustained_s,
        "source_ports": SOURCE_PORTS * len(apis),
        "tw_reuse": {"stack": stack_reuse, "compare": other_reuse},
        "series": series,
    }
