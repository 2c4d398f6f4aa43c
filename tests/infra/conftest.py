"""Run the Pulumi program under mocks that record what it registers."""

import hashlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pulumi
import pytest

import contract
from engine_harness import tls_resources
from engine_harness.docker_mocks import Options, autoname
from engine_harness.program import run_program
from engine_harness.provider_rules import GET_REMOTE_IMAGE
from engine_harness.state_secrets import contains_secret, unwrap
from tests.engine_stacks import PROJECT, full_config


def base_image_id(name: str) -> str:
    """The id the mocks' engine gives a base image."""
    return f"sha256:{hashlib.sha256(name.encode()).hexdigest()}"


@dataclass(frozen=True)
class Registered:
    typ: str
    name: str
    inputs: dict[str, Any]  # plain: secrets unwrapped
    options: Options
    outputs: dict[str, Any]
    # Inputs that arrived as secrets.
    secret: frozenset[str] = frozenset()


class RecordingMocks(pulumi.runtime.Mocks):
    """Record every registration; answer with plausible engine outputs."""

    def __init__(self) -> None:
        self.resources: list[Registered] = []
        # Each registration's resource options, filled in by the harness's OptionsMonitor.
        self.options: dict[str, Options] = {}
        # For each registration, the names whose registration had completed when it began.
        self.completed_before: dict[str, set[str]] = {}
        self._completed: set[str] = set()
        self._lock = threading.Lock()
        self.missing_images: set[str] = set()

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        with self._lock:
            self.completed_before[args.name] = set(self._completed)
        if args.typ.endswith(":Container"):
            time.sleep(0.05)  # a slow engine: dependents must still wait for containers
        outputs = unwrap(args.inputs)
        if args.typ in tls_resources.CREATE:  # real keys and certificates, as the harness makes
            _, outputs = tls_resources.create(args.typ, args.name, unwrap(args.inputs))
        if args.typ == "docker:index/image:Image":
            digest = hashlib.sha256(json.dumps(args.inputs, sort_keys=True).encode()).hexdigest()
            outputs["repoDigest"] = f"sha256:{digest}"
        if args.typ == "docker:index/network:Network":
            outputs["ipamConfigs"] = [{"subnet": "172.31.0.0/16"}]
        if args.typ.endswith(":Container") and "name" not in args.inputs:
            outputs["name"] = autoname(args.name)  # as pulumi-docker names it
        with self._lock:
            options = self.options[args.name]
            self.resources.append(
                Registered(
                    args.typ,
                    args.name,
                    unwrap(args.inputs),
                    options,
                    outputs,
                    frozenset(k for k, v in args.inputs.items() if contains_secret(v)),
                )
            )
            self._completed.add(args.name)
        return f"{args.name}-id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict, list]:
        assert args.token == GET_REMOTE_IMAGE, (
            f"the program made an unexpected invoke: {args.token}"
        )
        # Every base image is on the engine, with an id of its own unless `missing_images`.
        name = str(args.args["name"])
        if name in self.missing_images:
            return {}, [("name", f"did not find docker image '{name}'")]
        return {"id": base_image_id(name), "name": name, "repoDigest": ""}, []

    def of_type(self, suffix: str) -> list[Registered]:
        return [r for r in self.resources if r.typ.endswith(suffix)]


@dataclass
class Deployment:
    mocks: RecordingMocks
    exports: dict[str, Any]

    @property
    def containers(self) -> list[Registered]:
        return self.mocks.of_type(":Container")

    def with_role(self, role: str) -> list[Registered]:
        return [c for c in self.containers if labels_of(c)[contract.LABEL_ROLE] == role]

    @property
    def api_containers(self) -> list[Registered]:
        return self.with_role(contract.ROLE_API)

    @property
    def proxy(self) -> Registered:
        (proxy,) = self.with_role(contract.ROLE_PROXY)
        return proxy


def labels_of(resource: Registered) -> dict[str, str]:
    return {entry["label"]: entry["value"] for entry in resource.inputs.get("labels", [])}


Deploy = Callable[..., Deployment]


@pytest.fixture
def deploy() -> Deploy:
    """deploy(stack="dev", missing_images=..., secrets=..., **config): run the program (the
    named base images not on the engine, the `secrets` keys set with --secret); return what it
    registered and exported."""

    def run(
        stack: str = "unit",
        missing_images: frozenset[str] = frozenset(),
        secrets: frozenset[str] = frozenset(),
        **config: str,
    ) -> Deployment:
        mocks = RecordingMocks()
        mocks.missing_images = set(missing_images)
        exports = run_program(
            mocks,
            stack,
            full_config(config),
            PROJECT,
            list(full_config(dict.fromkeys(secrets, ""))),
        )
        return Deployment(mocks, exports)

    return run
