"""What the real `pulumi up` does with a changed resource, as a table the engine harness applies.

Read from pulumi 1b59498, pulumi-docker 237b789, pulumi-terraform-bridge 59de6c6 and
kreuzwerker/terraform-provider-docker v4.5.0 (which pulumi-docker 5.x bridges). Each rule, then
where it is written:

- Replace or update. A changed field the provider can't update in place (ForceNew) makes the
  change a replacement, and so does a field in the program's `replace_on_changes` ("*": any).
  Other changes are updates in place: for a container, `ContainerUpdate` of restart and the
  resource limits (what dockerd refuses fails the deployment), the rest written to the state
  alone, never applied (tmpfs). The program replaces on every change.
  pulumi `pkg/resource/deploy/step_generator.go` applyReplaceOnChanges; kreuzwerker
  `internal/provider/resource_docker_container.go` (schema) and
  `resource_docker_container_funcs.go` resourceDockerContainerUpdate.
- Init errors. A resource left with init errors (a failed `wait`) is replaced on the next
  deploy if `replace_on_changes` covers `#initerror` ("*" does); otherwise, unchanged, it gets
  an empty update that clears the errors and checks nothing.
  step_generator.go applyReplaceOnChanges and continueStepsFromDiff (`hasInitErrors`);
  pulumi-terraform-bridge `pkg/tfbridge/provider.go` Update (`diff == nil`).
- Delete first or create first. Delete-before-replace when the program says so
  (`delete_before_replace`, true or false), else when the provider asks: pulumi-docker asks it
  for every container, the bridge for any resource whose `name` the program set.
  step_generator.go generateStepsFromDiff (`goal.DeleteBeforeReplace`); pulumi-docker
  `provider/resources.go` (`DeleteBeforeReplace: true` on docker_container); bridge
  `pkg/tfbridge/provider.go` Diff and `schema.go` nameRequiresDeleteBeforeReplace.
- Create-before-delete. The new resource is created when the program registers it; the old one
  is marked for deletion and deleted at the end of the deployment with the other deletes, in
  parallel where nothing orders them. A failed deployment deletes nothing; the next successful
  one deletes what is still marked.
  step_generator.go continueStepsFromDiff and GenerateDeletes; `step.go` CreateStep.Apply
  (`old.Delete = true`); `deployment_executor.go` performPostSteps.
- A failed step. The deployment ends once the steps under way have ended, and records what
  they made; the SDK stops at its first failed registration while others still run in their
  threads, so the harness waits for them (`EngineMocks.settle`).
  `deployment_executor.go` Execute (waits for its workers before it returns).
- Parallelism. Independent registrations run in parallel (the mock runtime registers them
  from several threads at once); a dependent registers after its dependencies.
  `deployment_executor.go` (ExecuteSerial per chain on a worker pool); Python SDK
  `runtime/rpc.py` (awaits each dependency's URN).
- Names. Without a `name`, pulumi-docker names a resource `<logical name>-<7 hex digits>`.
  pulumi-docker `provider/resources.go` SetAutonaming(255, "-"); bridge `info/autonaming.go`.
- Health wait. With `wait`, the container's id is recorded before it starts; the provider polls
  `docker inspect` every second for `healthy` until `wait_timeout` (it does not notice a
  container that exits or restarts), then fails with "container failed to be in healthy state"
  and nothing more. The container stays running, recorded with that init error; a replaced
  one stays marked for deletion.
  kreuzwerker resourceDockerContainerCreate; bridge Create and initializationError; step.go
  CreateStep.Apply.
- Delete. `ContainerStop` with `destroy_grace_seconds` (0 when unset: killed at once), then a
  forced `ContainerRemove`. Images are never deleted.
  kreuzwerker resourceDockerContainerDelete; pulumi-docker `provider/image.go`.
- Dynamic resources. The engine asks the pickled provider (`__provider`, dill) for its diff and
  create; a create that raises fails the deployment and records nothing. Their delete is the
  provider's (a no-op for ours).
  Python SDK `pulumi/dynamic/__main__.py` (Create, Diff, get_provider).
- Read back. The state records what the provider's Read reports after a create, not the
  inputs, and the next deployment diffs that against the inputs (`provider_read`).
- No refresh. `pulumi up` trusts the state the last deployment recorded; `up --refresh` reads
  every object back first, and one that is gone is created again.
  pulumi `pkg/cmd/pulumi/operations/io.go` getRefreshOption.
- Images. Built with BuildKit through the engine's API, and only when their inputs or the
  digest of their context changed (`image_build`).
"""

from typing import Any, Final

# A Pulumi dynamic resource (infra/health_gate.py): its provider is pickled into its inputs.
DYNAMIC: Final = "pulumi-python:dynamic:Resource"
NETWORK: Final = "docker:index/network:Network"
IMAGE: Final = "docker:index/image:Image"
CONTAINER: Final = "docker:index/container:Container"
SERVICE: Final = "docker:index/service:Service"
SECRET: Final = "docker:index/secret:Secret"  # noqa: S105 (a type token)
# The invoke that looks a local image up by name (kreuzwerker data_source_docker_image.go).
GET_REMOTE_IMAGE: Final = "docker:index/getRemoteImage:getRemoteImage"

# Top-level inputs the provider updates in place (no ForceNew in its schema); every other input
# of these types forces a replacement. docker_network has no Update at all.
UPDATED_IN_PLACE: Final[dict[str, frozenset[str]]] = {
    CONTAINER: frozenset(
        """attach containerReadRefreshTimeoutMilliseconds cpuPeriod cpuQuota cpuSet cpuShares
        destroyGraceSeconds deviceReadBps deviceReadIops deviceWriteBps deviceWriteIops
        healthcheck init logs maxRetryCount memory memoryReservation memorySwap mustRun
        removeVolumes restart rm start tmpfs wait waitTimeout""".split()  # noqa: SIM905 (a table)
    ),
    NETWORK: frozenset(),
    # A service updates in place (ServiceUpdate), but for the paths in SERVICE_FORCE_NEW.
    SERVICE: frozenset(
        """labels taskSpec mode updateConfig rollbackConfig endpointSpec
        convergeConfig""".split()  # noqa: SIM905 (a table)
    ),
    # Every secret input forces a replacement (Docker secrets can't change).
    SECRET: frozenset(),
}
# Service inputs that force a replacement, by path (resource_docker_service.go schema: name,
# auth, container_spec hosts and sysctl, every networks_advanced field).
SERVICE_FORCE_NEW: Final = (
    ("name",),
    ("auth",),
    ("taskSpec", "containerSpec", "hosts"),
    ("taskSpec", "containerSpec", "sysctl"),
    ("taskSpec", "networksAdvanceds"),
)
# The provider asks for delete-before-replace whatever the name (pulumi-docker resources.go).
PROVIDER_DELETES_FIRST: Final = frozenset({CONTAINER})
# The error a container's failed health wait ends a deployment with (kreuzwerker
# errContainerFailedToBeInHealthyState), and the provider's polling interval.
UNHEALTHY_ERROR: Final = "container failed to be in healthy state"
WAIT_POLL_SECONDS: Final = 1.0
# The special key `replace_on_changes` names init errors by (step_generator.go).
INIT_ERROR_KEY: Final = "#initerror"


def _at(value: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        value = (value or {}).get(part)
    return value


def replaces(
    typ: str,
    changed: set[str],
    replace_on_changes: list[str],
    old: dict[str, Any] | None = None,
    new: dict[str, Any] | None = None,
) -> bool:
    """Is a change of these inputs (`old` to `new`) a replacement, not an update in place?"""
    if "*" in replace_on_changes or changed & set(replace_on_changes):
        return True
    if typ == SERVICE and any(
        _at(old or {}, path) != _at(new or {}, path) for path in SERVICE_FORCE_NEW
    ):
        return True
    return bool(changed - UPDATED_IN_PLACE.get(typ, frozenset()))


def deletes_first(typ: str, inputs: dict[str, object], delete_before_replace: bool | None) -> bool:
    """Is a replacement delete-before-replace?"""
    if delete_before_replace is not None:
        return delete_before_replace
    return typ in PROVIDER_DELETES_FIRST or "name" in inputs
