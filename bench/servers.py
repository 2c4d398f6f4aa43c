"""The servers the bench starts itself, beside the stack: the original post's setup (baseline),
nginx's fixed-response ceiling, the gunicorn configurations of the worker sweep and the
variants of the project's proxy. All on the run's own network, or the stack's for proxies."""

from dataclasses import dataclass, field
from typing import Any, Final

import docker
import docker.types
from docker.models.containers import Container

import contract
from bench import engine, nginx_configs
from bench.config import Run

# gunicorn as the original post ran it: its own defaults (one sync worker, no access log),
# not the project's gunicorn.conf.py.
BASELINE_COMMAND: Final = ["gunicorn", "-c", "/dev/null", "--bind", "0.0.0.0:8000", "wsgi:app"]
NGINX_COMMAND: Final = ["nginx", "-g", "daemon off;"]
NGINX_CONF: Final = "/etc/nginx/nginx.conf"
NGINX_PORT: Final = 8080
# How the stack runs an API container (infra/rest_api_stack.py), so that a sweep figure is one
# of the stack's containers but for the settings swept.
API_HARDENING: Final[dict[str, Any]] = {
    "user": contract.API_USER,
    "read_only": True,
    "tmpfs": {"/tmp": "rw,noexec,nosuid,nodev,size=16m"},  # noqa: S108 (in the container)
    "cap_drop": ["ALL"],
    "security_opt": ["no-new-privileges:true"],
    "mem_limit": "256m",
    "ulimits": [docker.types.Ulimit(name="nproc", soft=512, hard=512)],
    "log_config": docker.types.LogConfig(
        type="json-file", config={"max-size": "10m", "max-file": "3"}
    ),
}


@dataclass(frozen=True)
class WorkerConfig:
    key: str
    title: str
    environment: dict[str, str] = field(default_factory=dict)
    command: list[str] | None = None


def _gunicorn(
    workers: int, worker_class: str, threads: int = 1, log: bool = True
) -> dict[str, str]:
    return {
        "WEB_CONCURRENCY": str(workers),
        "GUNICORN_WORKER_CLASS": worker_class,
        "GUNICORN_THREADS": str(threads),
        "GUNICORN_ACCESS_LOG": "on" if log else "off",
    }


WORKER_CONFIGS: Final = (
    WorkerConfig(
        "defaults", "gunicorn defaults: 1 sync worker, no access log", command=BASELINE_COMMAND
    ),
    WorkerConfig(
        "gthread-2x4", "gthread, 2 workers x 4 threads, access log", _gunicorn(2, "gthread", 4)
    ),
    WorkerConfig(
        "gthread-4x2", "gthread, 4 workers x 2 threads, access log", _gunicorn(4, "gthread", 2)
    ),
    WorkerConfig("sync-2", "sync, 2 workers, access log", _gunicorn(2, "sync")),
    WorkerConfig("sync-4", "sync, 4 workers, access log", _gunicorn(4, "sync")),
    WorkerConfig(
        "gthread-2x4-nolog",
        "gthread, 2 workers x 4 threads, no access log",
        _gunicorn(2, "gthread", 4, log=False),
    ),
    WorkerConfig("sync-2-nolog", "sync, 2 workers, no access log", _gunicorn(2, "sync", log=False)),
)


@dataclass(frozen=True)
class ProxyVariant:
    key: str
    title: str
    # Lines of proxy/nginx.conf replaced (old -> new); none: the file as shipped.
    replacements: dict[str, str] = field(default_factory=dict)


def start_api(
    client: docker.DockerClient, run: Run, what: str, image: str, network: str, config: WorkerConfig
) -> Container:
    return engine.start(
        client,
        run,
        what,
        image,
        network=network,
        command=config.command,
        environment={"PORT": str(contract.API_PORT), **config.environment},
        healthcheck=engine.image_healthcheck(client, image),
        **API_HARDENING,
    )


def start_nginx(
    client: docker.DockerClient,
    run: Run,
    what: str,
    image: str,
    network: str,
    conf: str,
    **kwargs: Any,
) -> Container:
    return engine.start(
        client,
        run,
        what,
        image,
        network=network,
        files={NGINX_CONF: conf},
        healthcheck=engine.http_healthcheck(NGINX_PORT),
        **kwargs,
    )


def start_baseline(
    client: docker.DockerClient, run: Run, network: str, api_image: str, nginx_image: str
) -> dict[str, Container]:
    """The original post's setup: gunicorn's defaults behind an untuned nginx."""
    api = engine.start(
        client,
        run,
        "baseline-api",
        api_image,
        network=network,
        aliases=[contract.API_ALIAS],
        command=BASELINE_COMMAND,
        healthcheck=engine.image_healthcheck(client, api_image),
    )
    engine.wait_healthy(api)
    nginx = start_nginx(
        client,
        run,
        "baseline-nginx",
        nginx_image,
        network,
        nginx_configs.BASELINE,
        command=NGINX_COMMAND,
    )
    return {"nginx": nginx, "api": api}


def start_ceiling(
    client: docker.DockerClient, run: Run, network: str, nginx_image: str
) -> Container:
    return start_nginx(
        client, run, "ceiling", nginx_image, network, nginx_configs.CEILING, command=NGINX_COMMAND
    )


def start_proxy_variant(
    client: docker.DockerClient,
    run: Run,
    stack_network: str,
    proxy_image: str,
    variant: ProxyVariant,
    **kwargs: Any,
) -> Container:
    """The project's proxy image, in front of the stack's API containers, with its
    nginx.conf changed as the variant says (read-write root: the file is put in first);
    kwargs: more container options (e.g. sysctls)."""
    return start_nginx(
        client,
        run,
        f"proxy-{variant.key}",
        proxy_image,
        stack_network,
        nginx_configs.variant(variant.replacements),
        environment={
            "API_UPSTREAM": f"{contract.API_ALIAS}:{contract.API_PORT}",
            "RATE_LIMIT_RPS": "0",
        },
        user=contract.PROXY_USER,
        tmpfs={"/tmp": "rw,noexec,nosuid,nodev,size=16m"},  # noqa: S108 (in the container)
        cap_drop=["ALL"],
        security_opt=["no-new-privileges:true"],
        mem_limit="128m",
        **kwargs,
    )
