"""The harness's Swarm translation, without an engine: Go durations, the inputs it refuses, the
spec it sends, and which changes replace a service."""

from typing import Any

import pytest

from engine_harness.provider_rules import SECRET, SERVICE, replaces
from engine_harness.swarm_resources import nanoseconds, require_known, service_spec

pytestmark = pytest.mark.unit

SERVICE_INPUTS: dict[str, Any] = {
    "name": "s",
    "taskSpec": {
        "containerSpec": {
            "image": "registry:5000/api@sha256:" + "a" * 64,
            "env": {"PORT": "8000"},
            "stopGracePeriod": "15s",
            "mounts": [{"target": "/tmp", "type": "tmpfs", "tmpfsOptions": {"sizeBytes": 16.0}}],
        },
        "networksAdvanceds": [{"id": "net", "aliases": ["api"]}],
        "resources": {"limits": {"memoryBytes": 268435456.0}},
    },
    "mode": {"replicated": {"replicas": 2.0}},
    "updateConfig": {"parallelism": 1, "order": "start-first", "monitor": "10s"},
    "endpointSpec": {"mode": "dnsrr"},
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [("15s", 15_000_000_000), ("1m30s", 90_000_000_000), ("250ms", 250_000_000), ("0s", 0)],
)
def test_durations_read_as_go_reads_them(text: str, expected: int) -> None:
    assert nanoseconds(text) == expected


@pytest.mark.parametrize("text", ["15", "1x", "s15", ""])
def test_a_duration_without_a_unit_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        nanoseconds(text)


def test_inputs_the_harness_does_not_apply_are_refused_by_path() -> None:
    refused: list[tuple[str, list[str]]] = []
    declared = {
        **SERVICE_INPUTS,
        "auth": {},
        "endpointSpec": {"mode": "vip", "ports": [{"targetPort": 1, "name": "web"}]},
    }
    declared["taskSpec"] = {**declared["taskSpec"], "placement": {"prefs": ["spread=node.id"]}}
    require_known(declared, lambda path, keys: refused.append((path, keys)))
    assert refused == [
        ("service", ["auth"]),
        ("taskSpec.placement", ["prefs"]),
        ("endpointSpec.ports[]", ["name"]),
    ]


def test_the_spec_sent_is_the_declared_one_in_the_engines_units() -> None:
    spec = service_spec(SERVICE_INPUTS)
    task = spec["task_template"]
    container = task["ContainerSpec"]
    assert container["StopGracePeriod"] == 15_000_000_000
    assert container["Env"] == ["PORT=8000"]
    assert container["Mounts"][0]["TmpfsOptions"]["SizeBytes"] == 16
    assert task["Resources"]["Limits"]["MemoryBytes"] == 268435456
    assert [(n["Target"], n["Aliases"]) for n in task["Networks"]] == [("net", ["api"])]
    assert spec["mode"]["replicated"]["Replicas"] == 2
    assert spec["update_config"]["Monitor"] == 10_000_000_000
    assert spec["endpoint_spec"]["Mode"] == "dnsrr"


def test_which_service_changes_replace_it() -> None:
    scaled = {**SERVICE_INPUTS, "mode": {"replicated": {"replicas": 3}}}
    assert not replaces(SERVICE, {"mode"}, [], SERVICE_INPUTS, scaled)
    moved = {
        **SERVICE_INPUTS,
        "taskSpec": {**SERVICE_INPUTS["taskSpec"], "networksAdvanceds": [{"id": "other"}]},
    }
    assert replaces(SERVICE, {"taskSpec"}, [], SERVICE_INPUTS, moved)
    assert replaces(SECRET, {"data"}, [])
