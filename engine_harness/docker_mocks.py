"""Pulumi mocks that apply each declared Docker resource to a real engine, as `pulumi up` would.

Under Pulumi's mock runtime the program registers its resources with `new_resource`; this
class creates each one on the engine through the Docker SDK for Python with every declared
input, waits where the program asks it to, and returns what the provider would read back as
the resource's outputs (`provider_read`). An input it does not know how to apply is an error,
so nothing declared is silently dropped.

A state file per stack records what was created, from which inputs, with which init errors
and whether it is marked for deletion, like Pulumi's own state. The next run plans from it as
the engine does: unchanged, updated in place, or replaced (create-first or delete-first,
deletes at the end, a failed health wait left running); `provider_rules` has each rule with the
source it was read from. `drift` is the read-back check, `refresh` is `up --refresh`, and
`destroy` removes everything in reverse order.
"""

import base64
import json
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import dill
import docker
import docker.errors
import docker.types
import pulumi
from pulumi.runtime.mocks import MockMonitor

from engine_harness import image_build, state_secrets, swarm_resources, tls_resources
from engine_harness.provider_read import MIB, changes, read_back
from engine_harness.provider_rules import (
    CONTAINER,
    DYNAMIC,
    GET_REMOTE_IMAGE,
    IMAGE,
    INIT_ERROR_KEY,
    NETWORK,
    SECRET,
    SERVICE,
    UNHEALTHY_ERROR,
    WAIT_POLL_SECONDS,
    deletes_first,
    replaces,
)


class UnappliedInputError(RuntimeError):
    """The program declares something the harness cannot apply to the engine."""


class DeployError(RuntimeError):
    """The engine refused or failed a declared resource."""


class PartialCreate(Exception):
    """The object exists on the engine but failed to initialize (e.g. its health wait)."""

    def __init__(self, resource_id: str, outputs: dict[str, Any], reason: str) -> None:
        super().__init__(reason)
        self.resource_id, self.outputs, self.reason = resource_id, outputs, reason


@dataclass
class Record:
    """One resource as applied: its type, logical name, inputs, engine id and outputs; the
    reasons it failed to initialize; marked for deletion when replaced create-first."""

    typ: str
    name: str
    inputs: dict[str, Any]
    id: str
    outputs: dict[str, Any]
    init_errors: list[str] = field(default_factory=list)
    delete: bool = False
    # Inputs and outputs that are secrets: encrypted in the state file.
    secret: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Options:
    """The resource options of a registration that decide how it is replaced, and where it
    stands in the graph (what a policy pack is told of it)."""

    urn: str = ""
    delete_before_replace: bool | None = None
    replace_on_changes: tuple[str, ...] = ()
    ignore_changes: tuple[str, ...] = ()
    parent: str = ""
    dependencies: tuple[str, ...] = ()
    # The URNs each input's value came from, by input name (e.g. a container's image).
    property_dependencies: dict[str, tuple[str, ...]] = field(default_factory=dict)


class OptionsMonitor(MockMonitor):
    """The mock runtime's monitor, also keeping each registration's options (the mocks'
    `new_resource` sees only its inputs) in `mocks.options`, by logical name."""

    def RegisterResource(self, request: Any) -> Any:
        options = getattr(self.mocks, "options", None)
        if options is not None:
            options[request.name] = Options(
                urn=self.make_urn(request.parent, request.type, request.name),
                delete_before_replace=(
                    request.deleteBeforeReplace if request.deleteBeforeReplaceDefined else None
                ),
                replace_on_changes=tuple(request.replaceOnChanges),
                ignore_changes=tuple(request.ignoreChanges),
                parent=request.parent,
                dependencies=tuple(request.dependencies),
                property_dependencies={
                    key: tuple(value.urns) for key, value in request.propertyDependencies.items()
                },
            )
        return super().RegisterResource(request)


@dataclass
class Summary:
    """What one run did, by logical resource name."""

    created: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)


def _covers(options: Options, key: str) -> bool:
    return "*" in options.replace_on_changes or key in options.replace_on_changes


def _require_known(
    typ: str, name: str, inputs: dict[str, Any], known: set[str] | frozenset[str]
) -> None:
    unknown = sorted(set(inputs) - known)
    if unknown:
        raise UnappliedInputError(
            f"{typ} {name!r}: declared inputs {unknown} are not applied by the engine harness;"
            " teach engine_harness/docker_mocks.py to apply them before declaring them"
        )


def _sub_keys(
    typ: str, name: str, what: str, value: dict[str, Any], known: set[str] | frozenset[str]
) -> None:
    _require_known(f"{typ} {what}", name, value, known)


class EngineMocks(pulumi.runtime.Mocks):
    """Mocks that deploy to the Docker engine of `client`, remembering state in `state_file`."""

    def __init__(self, client: docker.DockerClient, state_file: Path) -> None:
        self.client = client
        self.state_file = state_file
        records = load_state(state_file)
        self.previous: dict[str, Record] = {r.name: r for r in records if not r.delete}
        # Replaced create-first by a deployment that failed before its deletes.
        self.marked: list[Record] = [r for r in records if r.delete]
        self.applied: list[Record] = []
        self.summary = Summary()
        # Filled by OptionsMonitor as the program registers resources.
        self.options: dict[str, Options] = {}
        # The secret inputs and outputs of this run's registrations, by logical name.
        self.secret: dict[str, list[str]] = {}
        # Independent resources are registered from several threads at once.
        self._lock = threading.Lock()
        # Registrations under way, each in a thread of the mock runtime's.
        self._in_flight = 0
        self._settled = threading.Condition()
        self._handlers: dict[str, Callable[[str, dict[str, Any]], tuple[str, dict[str, Any]]]] = {
            NETWORK: self._network,
            IMAGE: self._image,
            CONTAINER: self._container,
            SERVICE: self._service,
            SECRET: self._secret,
        }

    # --- Pulumi's Mocks interface -----------------------------------------------------------

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict]:
        declared = json.loads(json.dumps(args.inputs))
        # Applied and compared plain; secret again in the outputs and encrypted in the state.
        secret = sorted(k for k, v in declared.items() if state_secrets.contains_secret(v))
        secret += sorted(tls_resources.SECRET_OUTPUTS.get(args.typ, set()) - set(secret))
        with self._lock:
            self.secret[args.name] = secret
        with self._settled:
            self._in_flight += 1
        try:
            resource_id, outputs = self._register(args, state_secrets.unwrap(declared))
        finally:
            with self._settled:
                self._in_flight -= 1
                self._settled.notify_all()
        return resource_id, state_secrets.wrap(outputs, secret)

    def settle(self, timeout: float = 600.0) -> None:
        """Wait for the registrations under way. The SDK gives up on a program at its first
        failed registration while others still run in their threads; the engine waits for
        every step under way before it ends a deployment and saves the state."""
        with self._settled:
            self._settled.wait_for(lambda: self._in_flight == 0, timeout)

    def _register(
        self, args: pulumi.runtime.MockResourceArgs, inputs: dict[str, Any]
    ) -> tuple[str | None, dict]:
        previous = self.previous.get(args.name)
        if args.typ in tls_resources.CREATE:
            return self._tls(args, inputs, previous)
        if args.typ == DYNAMIC:
            return self._dynamic(args, inputs, previous)
        handler = self._handlers.get(args.typ)
        if handler is None:
            if args.typ.startswith("docker:"):
                raise UnappliedInputError(f"{args.typ} {args.name!r}: resource type not applied")
            # Component resources own nothing on the engine.
            return f"{args.name}-component", dict(args.inputs)
        options = self.options.get(args.name, Options())
        nested = [path for path in options.ignore_changes if not path.isidentifier()]
        if nested:
            raise UnappliedInputError(
                f"{args.typ} {args.name!r}: ignore_changes {nested}: only"
                " top-level inputs are applied by the engine harness"
            )
        if previous is not None:
            # The engine keeps the previous inputs of what the program says to ignore.
            kept = {k: previous.inputs[k] for k in options.ignore_changes if k in previous.inputs}
            inputs = {**inputs, **kept}
        if args.typ == IMAGE:
            return self._image_step(args, inputs, previous)
        return self._apply(args, handler, inputs, previous, options)

    def _apply(
        self,
        args: pulumi.runtime.MockResourceArgs,
        handler: Callable[[str, dict[str, Any]], tuple[str, dict[str, Any]]],
        inputs: dict[str, Any],
        previous: Record | None,
        options: Options,
    ) -> tuple[str, dict[str, Any]]:
        """A network or container: created, kept, updated or replaced as the engine would."""
        replaced = None  # the previous object, when it goes only at the end
        # The state is trusted: an object removed behind Pulumi's back is still "there" until
        # a refresh (`refresh()`), as with `pulumi up`.
        if previous is not None:
            changed = changes(args.typ, previous.outputs, inputs, options.ignore_changes)
            retry = bool(previous.init_errors) and _covers(options, INIT_ERROR_KEY)
            if not changed and not retry:
                # Unchanged; an empty update clears init errors, checking nothing.
                return self._keep(args, inputs, previous)
            if not retry and not replaces(
                args.typ, changed, list(options.replace_on_changes), previous.outputs, inputs
            ):
                return self._update(args, inputs, previous, changed)
            if deletes_first(args.typ, inputs, options.delete_before_replace):
                if args.typ == NETWORK:
                    # The engine would first delete and recreate every container on it.
                    raise UnappliedInputError(
                        f"{args.typ} {args.name!r}: replacing the network ({sorted(changed)})"
                        " is not emulated; remove the stack first (`make local-down`)"
                    )
                self._delete(previous)
                with self._lock:  # gone: out of the state, whatever the create does
                    del self.previous[args.name]
                    save_state(self.state_file, self._current_state())
            else:
                replaced = previous
        try:
            resource_id, outputs = handler(args.name, inputs)
        except PartialCreate as partial:
            # Recorded with its init error and left as it is; what it replaces stays marked.
            record = Record(
                args.typ, args.name, inputs, partial.resource_id, partial.outputs, [partial.reason]
            )
            self._record(record, previous, replaced)
            raise DeployError(f"creating {self._urn(args.name)}: {partial.reason}") from None
        self._record(Record(args.typ, args.name, inputs, resource_id, outputs), previous, replaced)
        return resource_id, outputs

    def _image_step(
        self, args: pulumi.runtime.MockResourceArgs, inputs: dict[str, Any], previous: Record | None
    ) -> tuple[str, dict[str, Any]]:
        """Built when its inputs or its context's digest changed (the provider's Check adds the
        digest to the inputs), else left as it is, whatever the engine has meanwhile (the
        provider's Read echoes its state). An update, never a replacement."""
        build = dict(inputs["build"])
        context, dockerfile = _build_paths(build)
        build["contextDigest"] = image_build.context_digest(context, dockerfile)
        inputs = {**inputs, "build": build}
        if previous is not None and previous.inputs == inputs:
            return self._keep(args, inputs, previous)
        resource_id, outputs = self._image(args.name, inputs)
        record = Record(args.typ, args.name, inputs, resource_id, outputs)
        self._record(record, previous, action="updated")
        return resource_id, outputs

    def _update(
        self,
        args: pulumi.runtime.MockResourceArgs,
        inputs: dict[str, Any],
        previous: Record,
        changed: set[str],
    ) -> tuple[str, dict[str, Any]]:
        """An update in place, as the provider's Update does it: ContainerUpdate with the
        limits and restart policy, the other changed inputs written to the state alone; what
        dockerd refuses fails the deployment. The outputs are the plan's, not read back."""
        outputs = {**previous.outputs, **{k: inputs.get(k) for k in changed}}
        record = Record(args.typ, args.name, inputs, previous.id, outputs)
        try:
            if args.typ == CONTAINER:
                container_update(self.client, previous.id, inputs)
            elif args.typ == SERVICE:
                swarm_resources.update_service(self.client, previous.id, inputs)
        except docker.errors.APIError as error:
            raise DeployError(
                f"updating {self._urn(args.name)} ({sorted(changed)}): {error.explanation or error}"
            ) from None
        except swarm_resources.ServiceFailed as failed:
            # The state keeps the spec it attempted, with the error (the bridge's Update
            # returns the planned state with an initialization error).
            record.init_errors = [str(failed)]
            self._record(record, previous, action="updated")
            raise DeployError(f"updating {self._urn(args.name)}: {failed}") from None
        self._record(record, previous, action="updated")
        return previous.id, outputs

    def _tls(
        self, args: pulumi.runtime.MockResourceArgs, inputs: dict[str, Any], previous: Record | None
    ) -> tuple[str, dict[str, Any]]:
        """A key, request or certificate: kept while its inputs are unchanged and it isn't due
        for renewal, else made anew (every input forces a replacement; nothing is on the
        engine to delete)."""
        if (
            previous is not None
            and previous.inputs == inputs
            and not tls_resources.ready_for_renewal(previous.outputs)
        ):
            return self._keep(args, inputs, previous)
        try:
            resource_id, outputs = tls_resources.create(args.typ, args.name, inputs)
        except ValueError as error:
            raise UnappliedInputError(str(error)) from None
        self._record(Record(args.typ, args.name, inputs, resource_id, outputs), previous)
        return resource_id, outputs

    def _dynamic(
        self, args: pulumi.runtime.MockResourceArgs, inputs: dict[str, Any], previous: Record | None
    ) -> tuple[str, dict[str, Any]]:
        """A dynamic resource, through its own pickled provider, as the engine runs it."""
        pickled = inputs["__provider"]
        if isinstance(pickled, dict):  # kept secret in the state: {<secret signature>, value}
            pickled = pickled["value"]
        provider = dill.loads(base64.b64decode(pickled))  # noqa: S301 (the program's own)
        if previous is not None and not provider.diff(previous.id, previous.inputs, inputs).changes:
            return self._keep(args, inputs, previous)
        try:
            result = provider.create(inputs)
        except Exception as error:
            raise DeployError(
                f"creating {self._urn(args.name)}: {type(error).__name__}: {error}"
            ) from None
        outputs = {**(result.outs or {}), "__provider": inputs["__provider"]}
        self._record(Record(args.typ, args.name, inputs, str(result.id), outputs), previous)
        return str(result.id), outputs

    def _keep(
        self, args: pulumi.runtime.MockResourceArgs, inputs: dict[str, Any], previous: Record
    ) -> tuple[str, dict[str, Any]]:
        """The previous object, unchanged (its init errors cleared, as an empty update does)."""
        record = Record(args.typ, args.name, inputs, previous.id, previous.outputs)
        self._record(record, previous, action="unchanged")
        return previous.id, previous.outputs

    def _urn(self, name: str) -> str:
        """The URN the engine would name the resource by in an error."""
        return self.options.get(name, Options()).urn or name

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict, list[tuple[str, str]]]:
        if args.token != GET_REMOTE_IMAGE:
            raise UnappliedInputError(f"invoke {args.token} is not applied by the engine harness")
        # A local image by name (kreuzwerker data_source_docker_image.go): its id, and the
        # registry digest it was pulled by, if any.
        name = str(args.args["name"])
        try:
            image = self.client.images.get(name)
        except docker.errors.ImageNotFound:
            return {}, [("name", f"did not find docker image '{name}'")]
        digests = image.attrs.get("RepoDigests") or []
        repository = name.split(":", 1)[0]  # as determineRepoDigest cuts it
        matching = [d for d in digests if d.startswith(repository)] or digests
        return {"id": image.id, "name": name, "repoDigest": matching[0] if matching else ""}, []

    def drift(self) -> dict[str, dict[str, tuple[Any, Any]]]:
        """The read-back check, after a run: every container and network this run declared,
        read back from the engine now as the provider's Read would, against its declared
        inputs (the program's ignore_changes left out, as the engine leaves them out).
        What differs, by resource: {input: (read back, declared)}. Empty means the next `up`
        would plan no change."""
        found = {}
        for record in self.applied:
            attrs = self._inspect(record) if record.typ in ENGINE_OBJECTS else None
            if attrs is None:
                continue
            outputs = read_back(record.typ, record.inputs, attrs)
            ignore = self.options.get(record.name, Options()).ignore_changes
            differing = changes(record.typ, outputs, record.inputs, ignore)
            if differing:
                found[record.name] = {
                    key: (outputs.get(key), record.inputs.get(key)) for key in sorted(differing)
                }
        return found

    def refresh(self) -> list[str]:
        """`pulumi up --refresh`: read every object back first. One that is gone leaves the
        state (the program's run then creates it again); the others' outputs become what the
        engine reports now. Images and dynamic resources keep their state (their Read echoes
        it). Returns the names of the objects that were gone."""
        gone = []
        for record in list(self.previous.values()):
            if record.typ not in ENGINE_OBJECTS:
                continue
            attrs = self._inspect(record)
            if attrs is None:
                del self.previous[record.name]
                gone.append(record.name)
            else:
                record.outputs = {**record.outputs, **read_back(record.typ, record.inputs, attrs)}
        save_state(self.state_file, self._current_state())
        return gone

    # --- state --------------------------------------------------------------------------------

    def _record(
        self,
        record: Record,
        previous: Record | None,
        replaced: Record | None = None,
        *,
        action: str = "replaced",
    ) -> None:
        """Keep what this run did to a resource: created (it had no previous record), else
        `action`: replaced, updated or unchanged."""
        with self._lock:
            record.secret = self.secret.get(record.name, [])
            self.applied.append(record)
            if replaced is not None:
                replaced.delete = True
                self.marked.append(replaced)
            getattr(self.summary, "created" if previous is None else action).append(record.name)
            save_state(self.state_file, self._current_state())

    def _current_state(self) -> list[Record]:
        """What exists now, in creation order: the earlier records in their places (this run's
        where it re-declared one), then this run's new ones, then those marked for deletion. A
        run that fails half-way thus leaves a state that still lists each network before the
        containers attached to it."""
        applied = {record.name: record for record in self.applied}
        kept = [applied.pop(name, record) for name, record in self.previous.items()]
        return kept + list(applied.values()) + self.marked

    def finish(self) -> Summary:
        """After a successful run: delete what was replaced create-first (in this run or a
        failed earlier one) and what the program no longer declares, as the engine does at the
        end of a deployment: services and containers in parallel, then secrets, then
        networks."""
        declared = {record.name for record in self.applied}
        gone = [r for r in self.previous.values() if r.name not in declared]
        self.summary.deleted.extend(r.name for r in gone)
        doomed = self.marked + gone
        for kind in DELETE_ORDER:
            batch = [record for record in doomed if record.typ == kind]
            with ThreadPoolExecutor(max_workers=max(len(batch), 1)) as pool:
                list(pool.map(self._delete, batch))
        self.marked = []
        save_state(self.state_file, self.applied)
        return self.summary

    # --- resources ----------------------------------------------------------------------------

    def _inspect(self, record: Record) -> dict[str, Any] | None:
        """The object's `docker inspect`, or None when it is gone."""
        getter = {
            NETWORK: self.client.networks.get,
            CONTAINER: self.client.containers.get,
            SERVICE: self.client.services.get,
            SECRET: self.client.secrets.get,
        }[record.typ]
        try:
            return dict(getter(record.id).attrs)
        except docker.errors.NotFound:
            return None

    def _delete(self, record: Record) -> None:
        delete_object(self.client, record)

    def _network(self, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        _require_known(
            NETWORK,
            name,
            inputs,
            {"name", "driver", "labels", "ipamConfigs", "attachable", "options"},
        )
        inputs = {"name": autoname(name), **inputs}
        pools = []
        for config in inputs.get("ipamConfigs") or []:
            _sub_keys(NETWORK, name, "ipamConfigs", config, {"subnet", "ipRange", "gateway"})
            pools.append(
                docker.types.IPAMPool(
                    subnet=config.get("subnet"),
                    iprange=config.get("ipRange"),
                    gateway=config.get("gateway"),
                )
            )
        try:
            network = self.client.networks.create(
                inputs["name"],
                driver=inputs.get("driver", "bridge"),
                ipam=docker.types.IPAMConfig(pool_configs=pools) if pools else None,
                labels=_labels(inputs),
                attachable=inputs.get("attachable"),
                options=inputs.get("options"),
                check_duplicate=True,
            )
        except docker.errors.APIError as error:
            # E.g. a subnet another network already uses (Docker: "networks have overlapping
            # IPv4", or "failed to allocate gateway" when the gateway is declared).
            subnets = ", ".join(str(pool["Subnet"]) for pool in pools) or "chosen by Docker"
            raise DeployError(
                f"{NETWORK} {name!r} (subnet {subnets}): {error.explanation or error}"
            ) from None
        network.reload()
        return network.id, {**read_back(NETWORK, inputs, network.attrs), "id": network.id}

    def _image(self, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        # buildOnPreview only matters in a preview; this is an update.
        _require_known(
            IMAGE, name, inputs, {"imageName", "build", "skipPush", "buildOnPreview", "registry"}
        )
        registry = inputs.get("registry") or {}
        _sub_keys(IMAGE, name, "registry", registry, {"server"})
        build = inputs["build"]
        _sub_keys(IMAGE, name, "build", build, IMAGE_BUILD_INPUTS)
        context, dockerfile = _build_paths(build)
        try:
            image_id = image_build.build(
                self.client,
                context,
                dockerfile,
                inputs["imageName"],
                build.get("args") or {},
                build.get("platform"),
            )
        except (image_build.BuildFailedError, docker.errors.APIError) as error:
            raise DeployError(f"{IMAGE} {name!r}: build failed: {error}") from None
        # Pushed unless skipPush: the repository's digest is then the reference (the
        # provider's push result), else the image's id.
        repo_digest = image_id
        if not inputs.get("skipPush"):
            try:
                repo_digest = image_build.push(self.client, inputs["imageName"])
            except (image_build.BuildFailedError, docker.errors.APIError) as error:
                raise DeployError(f"{IMAGE} {name!r}: push failed: {error}") from None
        return image_id, {
            **inputs,
            "repoDigest": repo_digest,
            "baseImageName": inputs["imageName"],
            "platform": build.get("platform"),
        }

    def _container(self, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        _require_known(CONTAINER, name, inputs, CONTAINER_INPUTS)
        inputs = {"name": autoname(name), **inputs}
        kwargs = container_create_args(self.client, name, inputs)
        networks = inputs.get("networksAdvanced") or []
        container = self.client.containers.create(**kwargs)
        # From here on the container is the resource's, whatever fails: the provider records
        # its id right after the create, and, when the create fails later, the planned state
        # (its Read comes only at the end of a create that succeeds).
        outputs = {**inputs, "id": container.id}
        try:
            # The first network is attached at create time; any others before the start.
            for extra in networks[1:]:
                _sub_keys(CONTAINER, name, "networksAdvanced", extra, NETWORK_ATTACHMENT)
                self.client.networks.get(extra["name"]).connect(
                    container,
                    aliases=extra.get("aliases") or None,
                    ipv4_address=extra.get("ipv4Address"),
                )
            container.start()
            if inputs.get("wait"):
                wait_healthy(container, float(inputs.get("waitTimeout", 60)))
        except (docker.errors.DockerException, DeployError) as error:
            raise PartialCreate(container.id, outputs, str(error)) from None
        # The provider's create ends with its Read: the state records what the engine reports.
        container.reload()
        return container.id, {**read_back(CONTAINER, inputs, container.attrs), "id": container.id}

    def _service(self, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        def refuse(path: str, unknown: list[str]) -> None:
            raise UnappliedInputError(
                f"{SERVICE} {name!r}: declared inputs {unknown} of {path} are not applied by the"
                " engine harness; teach engine_harness/swarm_resources.py to apply them first"
            )

        swarm_resources.require_known(inputs, refuse)
        inputs = {"name": autoname(name), **inputs}
        try:
            service_id = swarm_resources.create_service(self.client, inputs)
        except docker.errors.APIError as error:
            raise DeployError(f"{SERVICE} {name!r}: {error.explanation or error}") from None
        except swarm_resources.ServiceFailed as failed:
            raise DeployError(f"creating {self._urn(name)}: {failed}") from None
        return service_id, {**inputs, "id": service_id}

    def _secret(self, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        _require_known(SECRET, name, inputs, swarm_resources.SECRET_INPUTS)
        inputs = {"name": autoname(name), **inputs}
        try:
            secret_id = swarm_resources.create_secret(self.client, inputs)
        except docker.errors.APIError as error:
            raise DeployError(f"{SECRET} {name!r}: {error.explanation or error}") from None
        return secret_id, {**inputs, "id": secret_id}


# What exists on the engine (a container, network, service or secret), and the order the end of
# a deployment or a destroy removes them in (nothing is removed while something uses it).
ENGINE_OBJECTS: Final = (SERVICE, CONTAINER, SECRET, NETWORK)
DELETE_ORDER: Final = ENGINE_OBJECTS
# How long a network's delete retries while tasks that are going still have endpoints on it
# (resource_docker_network_funcs.go resourceDockerNetworkRemoveRefreshFunc).
NETWORK_DELETE_SECONDS: Final = 30.0


def autoname(logical_name: str) -> str:
    """pulumi-docker's name for a resource declared without one."""
    return f"{logical_name}-{secrets.token_hex(4)[:7]}"


# Container inputs the harness applies (pulumi-docker wire names).
CONTAINER_INPUTS = {
    "name",
    "image",
    "envs",
    "networksAdvanced",
    "ports",
    "memory",
    "memorySwap",
    "user",
    "labels",
    "readOnly",
    "tmpfs",
    "capabilities",
    "securityOpts",
    "sysctls",
    "ulimits",
    "restart",
    "logDriver",
    "logOpts",
    "wait",
    "waitTimeout",
    "destroyGraceSeconds",
}

# Network inputs the harness applies.
NETWORK_INPUTS = {"name", "driver", "labels", "ipamConfigs", "attachable", "options"}

# Inputs of an image's build the harness applies; contextDigest is the provider's own.
IMAGE_BUILD_INPUTS = {"context", "dockerfile", "platform", "args", "contextDigest"}

# Keys of a container's networksAdvanced entry the harness applies.
NETWORK_ATTACHMENT = {"name", "aliases", "ipv4Address"}


def _labels(inputs: dict[str, Any]) -> dict[str, str]:
    return {entry["label"]: entry["value"] for entry in inputs.get("labels") or []}


def container_create_args(
    client: docker.DockerClient, name: str, inputs: dict[str, Any]
) -> dict[str, Any]:
    """Docker SDK arguments for a pulumi-docker Container's declared inputs."""
    kwargs: dict[str, Any] = {
        "image": inputs["image"],
        "name": inputs["name"],
        "environment": inputs.get("envs") or [],
        "labels": _labels(inputs),
        "read_only": bool(inputs.get("readOnly", False)),
        "tmpfs": inputs.get("tmpfs") or {},
        "security_opt": inputs.get("securityOpts") or None,
        "detach": True,
    }
    if "sysctls" in inputs:
        kwargs["sysctls"] = inputs["sysctls"]
    if "user" in inputs:
        kwargs["user"] = inputs["user"]
    if "memory" in inputs:
        kwargs["mem_limit"] = int(inputs["memory"]) * MIB  # pulumi-docker counts MiB
    if inputs.get("memorySwap"):
        kwargs["memswap_limit"] = swap_bytes(inputs["memorySwap"])
    if "capabilities" in inputs:
        _sub_keys(CONTAINER, name, "capabilities", inputs["capabilities"], {"adds", "drops"})
        kwargs["cap_add"] = inputs["capabilities"].get("adds") or None
        kwargs["cap_drop"] = inputs["capabilities"].get("drops") or None
    if "ulimits" in inputs:
        kwargs["ulimits"] = [
            docker.types.Ulimit(name=u["name"], soft=int(u["soft"]), hard=int(u["hard"]))
            for u in inputs["ulimits"]
        ]
    if "restart" in inputs:
        kwargs["restart_policy"] = {"Name": inputs["restart"]}
    if "logDriver" in inputs:
        kwargs["log_config"] = docker.types.LogConfig(
            type=inputs["logDriver"], config=inputs.get("logOpts") or {}
        )
    elif "logOpts" in inputs:
        raise UnappliedInputError(f"{CONTAINER} {name!r}: logOpts without logDriver")
    ports = {}
    for port in inputs.get("ports") or []:
        _sub_keys(CONTAINER, name, "ports", port, {"internal", "external", "ip", "protocol"})
        key = f"{int(port['internal'])}/{port.get('protocol', 'tcp')}"
        external = int(port["external"]) if "external" in port else None
        ports[key] = (port.get("ip", "0.0.0.0"), external)  # noqa: S104 (pulumi-docker's default)
    if ports:
        kwargs["ports"] = ports
    networks = inputs.get("networksAdvanced") or []
    if networks:
        first = networks[0]
        _sub_keys(CONTAINER, name, "networksAdvanced", first, NETWORK_ATTACHMENT)
        kwargs["network"] = first["name"]
        kwargs["networking_config"] = {
            first["name"]: client.api.create_endpoint_config(
                aliases=first.get("aliases"), ipv4_address=first.get("ipv4Address")
            )
        }
    return kwargs


def _build_paths(build: dict[str, Any]) -> tuple[Path, Path]:
    """The build's context and Dockerfile; relative paths are relative to the program's
    working directory, as for the provider (it runs in the program's directory)."""
    context = Path(build["context"]).resolve()
    return context, Path(build.get("dockerfile") or context / "Dockerfile").resolve()


def swap_bytes(megabytes: float) -> int:
    """memory_swap as the provider sends it: MiB, or -1 (unlimited) as it is."""
    return int(megabytes) * MIB if megabytes > 0 else int(megabytes)


def container_update(
    client: docker.DockerClient, container_id: str, inputs: dict[str, Any]
) -> None:
    """The provider's ContainerUpdate (resourceDockerContainerUpdate): memory, swap only when
    declared, the restart policy; dockerd checks them against what the container has."""
    update: dict[str, Any] = {"mem_limit": int(inputs.get("memory", 0)) * MIB}
    if inputs.get("memorySwap"):
        update["memswap_limit"] = swap_bytes(inputs["memorySwap"])
    if "restart" in inputs:
        update["restart_policy"] = {"Name": inputs["restart"]}
    client.api.update_container(container_id, **update)


def wait_healthy(container: Any, timeout: float) -> None:
    """Wait until the container's health check passes, as pulumi-docker's `wait` does: poll
    every second until the deadline, whatever else the container does (exits, restarts)."""
    deadline = time.monotonic() + timeout
    while True:
        container.reload()
        health = container.attrs["State"].get("Health")
        if health is None:
            raise DeployError(f"container {container.name}: wait declared but no health check")
        if health.get("Status") == "healthy":
            return
        if time.monotonic() + WAIT_POLL_SECONDS > deadline:
            raise DeployError(UNHEALTHY_ERROR)
        time.sleep(WAIT_POLL_SECONDS)


def delete_object(client: docker.DockerClient, record: Record) -> None:
    """Remove one applied object as the provider does; gone already is fine. A container is
    stopped first (its STOPSIGNAL, then SIGKILL after `destroyGraceSeconds`, at once when
    unset). Images stay, as with pulumi-docker."""
    try:
        if record.typ == CONTAINER:
            container = client.containers.get(record.id)
            container.stop(timeout=int(record.inputs.get("destroyGraceSeconds", 0)))
            container.remove(force=True)
        elif record.typ == SERVICE:
            swarm_resources.delete_service(client, record.id, record.inputs)
        elif record.typ == SECRET:
            client.api.remove_secret(record.id)
        elif record.typ == NETWORK:
            remove_network(client, record.id)
    except docker.errors.NotFound:
        pass


def remove_network(client: docker.DockerClient, network_id: str) -> None:
    """NetworkRemove, again while the engine says it has active endpoints (tasks still going)."""
    deadline = time.monotonic() + NETWORK_DELETE_SECONDS
    while True:
        try:
            client.networks.get(network_id).remove()
            return
        except docker.errors.APIError as error:
            if "active endpoints" not in str(error) or time.monotonic() > deadline:
                raise
        time.sleep(WAIT_POLL_SECONDS)


def _read(path: Path) -> dict[str, Any]:
    """The state file: a salt for its secrets and the resources."""
    if not path.is_file():
        return {"encryptionSalt": state_secrets.new_salt(), "resources": []}
    return dict(json.loads(path.read_text()))


def _sealed(values: dict[str, Any], keys: list[str], salt: str, seal: Callable) -> dict[str, Any]:
    return {k: seal(v, salt) if k in keys else v for k, v in values.items()}


def load_state(path: Path) -> list[Record]:
    document = _read(path)
    records = [Record(**entry) for entry in document["resources"]]
    for record in records:
        salt, keys = document["encryptionSalt"], record.secret
        record.inputs = _sealed(record.inputs, keys, salt, state_secrets.decrypt)
        record.outputs = _sealed(record.outputs, keys, salt, state_secrets.decrypt)
    return records


def save_state(path: Path, records: list[Record]) -> None:
    """Write the state, secrets encrypted (state_secrets), atomically."""
    salt = _read(path)["encryptionSalt"]
    entries = [
        {
            **record.__dict__,
            "inputs": _sealed(record.inputs, record.secret, salt, state_secrets.encrypt),
            "outputs": _sealed(record.outputs, record.secret, salt, state_secrets.encrypt),
        }
        for record in records
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps({"encryptionSalt": salt, "resources": entries}, indent=2))
    temporary.replace(path)


def destroy(client: docker.DockerClient, state_file: Path) -> list[str]:
    """Remove what a state file records, newest first, services and containers before secrets
    and networks whatever the state's order (nothing can be removed while in use); return
    their names. Images stay, as pulumi-docker leaves them (the next
    build reuses them)."""
    records = load_state(state_file)
    removed = []

    def order(record: Record) -> int:
        return DELETE_ORDER.index(record.typ) if record.typ in DELETE_ORDER else 0

    for record in sorted(reversed(records), key=order):
        delete_object(client, record)
        if record.typ in ENGINE_OBJECTS:
            removed.append(str(record.outputs.get("name", record.name)))
        records.remove(record)
        save_state(state_file, records)
    state_file.unlink(missing_ok=True)
    return removed
