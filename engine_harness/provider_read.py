"""What the provider reads back from the engine, and the change Pulumi then plans, as tables.

The real provider ends every create with its Read, and Pulumi records what Read returned as the
resource's outputs. The next `pulumi up` diffs those outputs, not the inputs last declared,
against the inputs declared now (pulumi-terraform-bridge `pkg/tfbridge/provider.go` Diff: the
prior state is built from `req.GetOlds()`, the outputs). So whatever the engine reports
differently from what was declared is a change on every `up`: the daemon's defaults merged in,
a value spelled another way, a value the program never declared. The harness does the same:
a resource's outputs are `read_back(...)`, and `changes(...)` is the diff.

Read as kreuzwerker/terraform-provider-docker v4.5.0 reads (internal/provider/
resource_docker_container_funcs.go resourceDockerContainerRead, resource_docker_network_funcs.go
resourceDockerNetworkReadDetailed); what each input becomes, with the engine's side, is in
docs/provider-fidelity.md.
"""

import json
from collections.abc import Callable
from typing import Any, Final

from engine_harness.provider_rules import CONTAINER, NETWORK

Inspect = dict[str, Any]
MIB: Final = 1024 * 1024


def _memory_swap(attrs: Inspect) -> int:
    swap = int(attrs["HostConfig"]["MemorySwap"])
    return swap // MIB if swap > 0 else swap  # -1 (unlimited) is read as it is


def _ports(attrs: Inspect) -> list[dict[str, Any]]:
    """flattenContainerPorts: one entry per host binding, the address as dockerd prints it."""
    ports = []
    for key, bindings in sorted((attrs["NetworkSettings"].get("Ports") or {}).items()):
        internal, _, protocol = key.partition("/")
        for binding in bindings or []:
            ports.append(
                {
                    "internal": int(internal),
                    "external": int(binding["HostPort"]),
                    "ip": binding["HostIp"],
                    "protocol": protocol,
                }
            )
    return ports


def _capabilities(attrs: Inspect) -> dict[str, list[str]] | None:
    host = attrs["HostConfig"]
    adds, drops = host.get("CapAdd") or [], host.get("CapDrop") or []
    return {"adds": adds, "drops": drops} if adds or drops else None


def _ulimits(attrs: Inspect) -> list[dict[str, Any]]:
    # Inspect adds the daemon's default-ulimits to the container's own (moby daemon/inspect.go).
    return [
        {"name": u["Name"], "soft": u["Soft"], "hard": u["Hard"]}
        for u in attrs["HostConfig"].get("Ulimits") or []
    ]


def _ipam(attrs: Inspect) -> list[dict[str, str]]:
    keys = {"subnet": "Subnet", "gateway": "Gateway", "ipRange": "IPRange"}
    return [
        {key: config[field] for key, field in keys.items() if config.get(field)}
        for config in (attrs.get("IPAM") or {}).get("Config") or []
    ]


def _label_set(labels: dict[str, str] | None) -> list[dict[str, str]]:
    return [{"label": key, "value": value} for key, value in sorted((labels or {}).items())]


# Each input the provider reads back: how, from `docker inspect`. Inputs not here keep their
# declared value in the state (not read: envs, labels and networksAdvanced of a container,
# "taken over from the Docker image"; state only: wait, destroyGraceSeconds).
READ: Final[dict[str, dict[str, Callable[[Inspect], Any]]]] = {
    CONTAINER: {
        "name": lambda a: a["Name"].lstrip("/"),
        # An id as the engine has it; a name as the container was created with (Read: the id
        # if the declared value starts with "sha256:", else Config.Image).
        "image": lambda a: (
            a["Image"] if a["Config"]["Image"].startswith("sha256:") else a["Config"]["Image"]
        ),
        "user": lambda a: a["Config"].get("User") or None,
        "readOnly": lambda a: a["HostConfig"]["ReadonlyRootfs"],
        "tmpfs": lambda a: a["HostConfig"].get("Tmpfs") or None,
        "capabilities": _capabilities,
        "securityOpts": lambda a: a["HostConfig"].get("SecurityOpt") or None,
        "sysctls": lambda a: a["HostConfig"].get("Sysctls") or None,
        "memory": lambda a: a["HostConfig"]["Memory"] // MIB,
        "memorySwap": _memory_swap,
        "ulimits": _ulimits,
        "restart": lambda a: a["HostConfig"]["RestartPolicy"]["Name"],
        "logDriver": lambda a: a["HostConfig"]["LogConfig"]["Type"],
        # The whole map dockerd keeps, its defaults merged in (resourceDockerContainerRead,
        # containerLogOptsForState; moby daemon/logs.go mergeAndVerifyLogConfig).
        "logOpts": lambda a: a["HostConfig"]["LogConfig"].get("Config") or None,
        "ports": _ports,
    },
    NETWORK: {
        "name": lambda a: a["Name"],
        "driver": lambda a: a["Driver"],
        "ipamConfigs": _ipam,
        "labels": lambda a: _label_set(a.get("Labels")),
        "attachable": lambda a: a.get("Attachable", False),
        # The engine's whole map, its own options included (an overlay's VXLAN id).
        "options": lambda a: a.get("Options") or None,
    },
}
# Read back though the program may not declare them, and diffed then against their zero value
# (Optional, not Computed in the provider's schema): any value the engine reports is a change.
# The others are read only when declared (log_opts, ulimit: `if d.GetOk(...)` in Read).
READ_UNDECLARED: Final[dict[str, frozenset[str]]] = {
    CONTAINER: frozenset({"memorySwap"}),
    NETWORK: frozenset(),
}
# Set-typed in the provider's schema: order carries no meaning.
SETS: Final = frozenset({"envs", "labels", "ulimits", "securityOpts", "ipamConfigs"})
ZERO: Final[dict[str, Any]] = {"memorySwap": 0}


def read_back(typ: str, inputs: dict[str, Any], attrs: Inspect) -> dict[str, Any]:
    """The outputs the provider records for an object: its inputs, with each input it reads
    overwritten by what the engine reports."""
    read = READ.get(typ, {})
    outputs = dict(inputs)
    for key, reader in read.items():
        if key in inputs or key in READ_UNDECLARED.get(typ, frozenset()):
            value = reader(attrs)
            if value is not None or key in inputs:
                outputs[key] = value
    return outputs


def _canonical(key: str, value: Any) -> str:
    """A value as the provider compares it: numbers as numbers, sets in any order."""
    if value is None:
        value = ZERO.get(key)
    value = json.loads(json.dumps(value), parse_float=_number)
    if key in SETS and isinstance(value, list):
        value = sorted(value, key=lambda item: json.dumps(item, sort_keys=True))
    if key == "capabilities" and isinstance(value, dict):
        value = {k: sorted(v or []) for k, v in value.items() if v}
    return json.dumps(value, sort_keys=True)


def _number(text: str) -> int | float:
    number = float(text)
    return int(number) if number.is_integer() else number


def changes(
    typ: str, outputs: dict[str, Any], inputs: dict[str, Any], ignore: tuple[str, ...] = ()
) -> set[str]:
    """The inputs whose planned value differs from the recorded outputs: what a `pulumi
    preview` would list. `ignore` is the program's `ignore_changes` (the bridge drops those
    attributes from the plan: pkg/tfshim/sdk-v2/provider2.go, processIgnoreChanges)."""
    # An input no longer declared is a change too (its recorded value against nothing); an
    # auto-name is kept from one run to the next (the bridge's Check reuses it).
    keys = set(inputs) | set(outputs)
    keys -= {"id"} | set(ignore) | ({"name"} - set(inputs))
    return {
        key for key in keys if _canonical(key, outputs.get(key)) != _canonical(key, inputs.get(key))
    }
