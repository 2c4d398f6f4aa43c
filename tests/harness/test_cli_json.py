"""`python -m engine_harness up --json`: what it reports of a deploy (the benchmark reads it)."""

from types import SimpleNamespace

import pytest

from engine_harness.__main__ import json_report
from engine_harness.docker_mocks import Record, Summary
from engine_harness.provider_rules import CONTAINER, IMAGE, NETWORK

pytestmark = pytest.mark.unit


def test_each_resource_has_its_kind_and_each_action_its_names() -> None:
    api = {"labels": [{"label": "pulumi.role", "value": "api"}]}
    applied = [
        Record(CONTAINER, "s-api-1", api, "c1", {}),
        Record(CONTAINER, "s-unlabelled", {}, "c2", {}),
        Record(IMAGE, "s-api-image", {}, "i1", {}),
        Record(NETWORK, "s-network", {}, "n1", {}),
    ]
    summary = Summary(created=["s-network", "s-api-1"], unchanged=["s-api-image"])
    report = json_report(SimpleNamespace(applied=applied), summary, {"url": "http://x"})
    assert report["kinds"] == {
        "s-api-1": "container:api",
        "s-unlabelled": "container:?",
        "s-api-image": "image",
        "s-network": "network",
    }
    assert report["summary"]["created"] == ["s-api-1", "s-network"]
    assert report["summary"]["unchanged"] == ["s-api-image"]
    assert report["summary"]["replaced"] == report["summary"]["deleted"] == []
    assert report["exports"] == {"url": "http://x"}
