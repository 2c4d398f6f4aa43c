"""Stacks deployed on the real Docker engine through the engine harness, for engine tests.

`Deployments.up(stack, **config)` runs the Pulumi program with the dev stack's config (on a
free port and subnet, with the offline base images, plus the given overrides); `close()`
removes every container, network and image tag of every stack it deployed, also after a
failed deploy.
"""

import contextlib
import os
import socket
import ssl
import subprocess
import sys
import uuid
from collections.abc import Collection
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import docker
import docker.errors

import contract
from engine_harness.__main__ import remove_labelled
from engine_harness.docker_mocks import EngineMocks, Summary, destroy
from engine_harness.free_resources import free_port, free_subnet
from engine_harness.program import REPO_ROOT, project_name, run_program, stack_config
from settings import Settings, settings_from

PROJECT = project_name()
# What the dev config deploys: a network, 2 images, 3 containers and a health wait for each,
# and the stack's CA (two keys, the CA's certificate, the proxy's request and certificate).
DEV_RESOURCES = 14


def full_config(values: dict[str, str]) -> dict[str, str]:
    """Config keys as Pulumi.<stack>.yaml spells them: "<project>:<key>"."""
    return {f"{PROJECT}:{key}": value for key, value in values.items()}


def new_stack_name() -> str:
    """A stack name no other test run uses."""
    return f"t{uuid.uuid4().hex[:10]}"


@dataclass
class EngineStack:
    name: str
    state_file: Path
    config: dict[str, str]
    exports: dict[str, Any] = field(default_factory=dict)
    summary: Summary = field(default_factory=Summary)
    # The read-back check after the deploy (EngineMocks.drift): empty when all is as declared.
    drift: dict[str, Any] = field(default_factory=dict)
    # Config keys set as secrets (full keys).
    secret_keys: frozenset[str] = frozenset()
    # The stack's CA certificate in a file (tlsMode self-signed), else None.
    ca_file: Path | None = None

    @property
    def url(self) -> str:
        return str(self.exports[contract.EXPORT_URL])

    @property
    def settings(self) -> Settings:
        """The stack's config as the program reads it."""
        return settings_from({key.split(":", 1)[1]: value for key, value in self.config.items()})


def side_by_side_config(
    client: docker.DockerClient, base_images: dict[str, str], stack_file: str = "dev"
) -> dict[str, str]:
    """The dev stack's config (or Pulumi.<stack_file>.yaml's) for a stack of its own next to
    others: a free port and subnet, and the offline base images (keys in full,
    "<project>:<key>")."""
    return stack_config(stack_file) | full_config(
        {
            "proxyPort": str(free_port()),
            "networkSubnet": free_subnet(client),
            "apiBaseImage": base_images["api"],
            "proxyBaseImage": base_images["proxy"],
        }
    )


class Deployments:
    """Deploys stacks through the engine harness; `close()` removes all of them."""

    def __init__(
        self,
        client: docker.DockerClient,
        base_images: dict[str, str],
        state_dir: Path,
        subnets_of: docker.DockerClient | None = None,
        stack_file: str = "dev",
        provider: dict[str, str] | None = None,
        provider_secrets: frozenset[str] = frozenset(),
    ) -> None:
        self.client = client
        # The stacks' `docker:` provider config (full keys), and which of it is secret.
        self.provider = provider or {}
        self.provider_secrets = provider_secrets
        # The stack file whose config a new stack starts from (Pulumi.<stack_file>.yaml).
        self.stack_file = stack_file
        self.base_images = base_images
        self.state_dir = state_dir
        # The engine whose networks a new stack's subnet must not overlap (its own by default).
        self.subnets_of = subnets_of or client
        self.stacks: list[EngineStack] = []

    def up(self, stack: str, *, secrets: Collection[str] = (), **overrides: str) -> EngineStack:
        """Deploy (or update) `stack`: the config of its last deploy, else the dev stack's on a
        free port, with `overrides` on top (`secrets`: keys set with --secret). Raises what the
        program raises."""
        return self._deploy(stack, overrides, refresh=False, secrets=secrets)

    def up_refreshed(self, stack: str) -> EngineStack:
        """`pulumi up --refresh` of `stack` with the config of its last deploy."""
        return self._deploy(stack, {}, refresh=True)

    def _deploy(
        self,
        stack: str,
        overrides: dict[str, str],
        *,
        refresh: bool,
        secrets: Collection[str] = (),
    ) -> EngineStack:
        earlier = [record for record in self.stacks if record.name == stack]
        base = earlier[-1].config if earlier else self.default_config()
        secret_keys = (earlier[-1].secret_keys if earlier else self.provider_secrets) | set(
            full_config(dict.fromkeys(secrets, ""))
        )
        record = EngineStack(stack, self.state_dir / f"{stack}.json", base | full_config(overrides))
        record.secret_keys = frozenset(secret_keys)
        # Recorded before the run, so a failed deploy is removed too.
        self.stacks.append(record)
        mocks = EngineMocks(self.client, record.state_file)
        if refresh:
            mocks.refresh()
        record.exports = run_program(mocks, stack, record.config, PROJECT, record.secret_keys)
        ca_pem = record.exports.get(contract.EXPORT_CA_CERTIFICATE)
        if ca_pem:
            record.ca_file = record.state_file.with_suffix(".ca.pem")
            record.ca_file.write_text(ca_pem)
        trust(ca_pem)
        record.summary = mocks.finish()
        record.drift = mocks.drift()
        return record

    def default_config(self) -> dict[str, str]:
        return self.provider | side_by_side_config(
            self.subnets_of, self.base_images, self.stack_file
        )

    def close(self) -> None:
        """Remove every deployed stack's containers and networks (by state, then by label)
        and its image tags. Every step is tried, even after one failed; the first failure is
        raised at the end. Safe to call more than once."""
        failures: list[Exception] = []
        for name in dict.fromkeys(record.name for record in reversed(self.stacks)):
            for step in (
                partial(destroy, self.client, self.state_dir / f"{name}.json"),
                partial(remove_labelled, self.client, PROJECT, name),
            ):
                try:
                    step()
                except (docker.errors.DockerException, OSError) as failure:
                    failures.append(failure)
            for role in ("api", "proxy"):
                # Never built, or still used by something else: left alone.
                with contextlib.suppress(docker.errors.APIError):
                    self.client.images.remove(f"{PROJECT}-{name}-{role}:{name}")
        if failures:
            raise failures[0]


@dataclass(frozen=True)
class Endpoint:
    """Where a stack's proxy answers on this host: its port and, for HTTPS, the CA to verify
    it by (None: plain HTTP)."""

    port: int
    ca_file: Path | None


def port_of(stack: EngineStack) -> Endpoint:
    https = stack.url.startswith("https://")
    return Endpoint(int(stack.url.rsplit(":", 1)[1]), stack.ca_file if https else None)


def connect(endpoint: Endpoint, timeout: float = 10.0) -> socket.socket:
    """A connection to the proxy: TLS (HTTP/1.1, the certificate verified) for HTTPS."""
    sock = socket.create_connection(("127.0.0.1", endpoint.port), timeout=timeout)
    if endpoint.ca_file is None:
        return sock
    context = ssl.create_default_context(cafile=str(endpoint.ca_file))
    context.set_alpn_protocols(["http/1.1"])
    return context.wrap_socket(sock, server_hostname="127.0.0.1")


def trust(ca_pem: str | None) -> None:
    """Add a stack's CA to the bundle the tests' clients verify by (tests/conftest.py), unless it
    is there: a client of a stream running meanwhile (a new connection) reads the bundle again."""
    bundle = os.environ.get("REQUESTS_CA_BUNDLE")
    if ca_pem and bundle and ca_pem not in Path(bundle).read_text(encoding="ascii"):
        with open(bundle, "a", encoding="ascii") as file:
            file.write(ca_pem)


def stack_objects(client: docker.DockerClient, stack: str) -> list[str]:
    """Names of the containers, networks and (on a swarm manager) services and secrets
    labelled as this project's `stack`."""
    labels = [f"{contract.LABEL_PROJECT}={PROJECT}", f"{contract.LABEL_STACK}={stack}"]
    found = [c.name for c in client.containers.list(all=True, filters={"label": labels})]
    found += [n.name for n in client.networks.list(filters={"label": labels})]
    if client.info()["Swarm"].get("ControlAvailable"):
        found += [s.name for s in client.services.list(filters={"label": labels})]
        found += [s.name for s in client.secrets.list(filters={"label": labels})]
    return found


def smoke(stack: EngineStack, ca_file: Path | None = None) -> subprocess.CompletedProcess[str]:
    """scripts/smoke_test.py against the stack's URL, trusting its CA (or `ca_file`)."""
    ca_file = ca_file or stack.ca_file
    ca = ["--ca-file", str(ca_file)] if ca_file else []
    redirect = stack.exports.get(contract.EXPORT_HTTP_REDIRECT_URL)
    ca += ["--redirect-url", redirect] if redirect else []
    return subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "scripts" / "smoke_test.py"),
            stack.url,
            *ca,
            "--wait",
            "30",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
