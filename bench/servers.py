"""The servers the bench starts itself, beside the stack: the original post's setup (baseline)
and nginx's fixed-response ceiling on the run's own network; API containers and proxies run
as the stack's are, with changes, on the stack's network."""

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
    "security_opt": ["no-new-privileges=true"],
    "mem_limit": "256m",
    "ulimits": [docker.types.Ulimit(name="nproc", soft=512, hard=512)],
    "log_config": docker.types.LogConfig(
        type="json-file", config={"max-size": "10m", "max-file": "3"}
    ),
}


@dataclass(frozen=True)
class Setup:
    """A setup measured through the proxy: the stack's, with changes to the API containers'
    environment (new API containers, as many as the stack's) and to proxy/nginx.conf (lines
    replaced, old -> new). No change: the stack's API containers behind a fresh proxy."""

    key: str
    title: str
    api_environment: dict[str, str] = field(default_factory=dict)
    replacements: dict[str, str] = field(default_factory=dict)
    # A whole nginx.conf instead of proxy/nginx.conf.
    conf: str | None = None


def container_environment(container: Container) -> dict[str, str]:
    """A container's environment (the image's and the program's) as a dict."""
    container.reload()
    return dict(entry.split("=", 1) for entry in container.attrs["Config"]["Env"])


def address(container: Container) -> str:
    """The container's address on its (one) network."""
    container.reload()
    (network,) = container.attrs["NetworkSettings"]["Networks"].values()
    return str(network["IPAddress"])


def upstreams(apis: list[Container]) -> str:
    """API_UPSTREAM for a proxy in front of these API containers."""
    return ",".join(f"{address(api)}:{contract.API_PORT}" for api in apis)


def start_api(
    client: docker.DockerClient,
    run: Run,
    what: str,
    like: Container,
    environment: dict[str, str],
) -> Container:
    """An API container run as the stack's container `like` is (image, environment, limits,
    hardening), on its network, with `environment` on top."""
    image = like.attrs["Image"]
    (network,) = like.attrs["NetworkSettings"]["Networks"]
    return engine.start(
        client,
        run,
        what,
        image,
        network=network,
        environment={**container_environment(like), **environment},
        probe=engine.image_probe(client, image),
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
        probe=engine.http_probe(NGINX_PORT),
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
        probe=engine.image_probe(client, api_image),
    )
    engine.wait_ready(api)
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


def start_proxy(
    client: docker.DockerClient,
    run: Run,
    what: str,
    like: Container,
    apis: list[Container],
    replacements: dict[str, str] | None = None,
    conf: str | None = None,
    **kwargs: Any,
) -> Container:
    """A proxy run as the stack's proxy `like` is (image, sysctls, limits, hardening), in front
    of `apis`, with its nginx.conf changed by `replacements` or replaced by `conf` (read-write
    root: the file is put in first); kwargs: more container options, or overrides (sysctls)."""
    like.reload()
    (network,) = like.attrs["NetworkSettings"]["Networks"]
    options: dict[str, Any] = {
        "sysctls": dict(like.attrs["HostConfig"].get("Sysctls") or {}) or None,
        **kwargs,
    }
    return start_nginx(
        client,
        run,
        what,
        like.attrs["Image"],
        network,
        conf or nginx_configs.variant(replacements or {}),
        environment={"API_UPSTREAM": upstreams(apis), "RATE_LIMIT_RPS": "0"},
        user=contract.PROXY_USER,
        tmpfs={"/tmp": "rw,noexec,nosuid,nodev,size=16m"},  # noqa: S108 (in the container)
        cap_drop=["ALL"],
        security_opt=["no-new-privileges=true"],
        mem_limit="128m",
        **options,
    )
