"""Many one-replica code-change redeploys in a row under one steady stream of requests: a
failure that one redeploy in many meets (a race of nginx's retries with the API's DNS name)
shows up here. Long (about 30 s a redeploy): not in the default run; `make soak`."""

import contextlib

import docker.errors
import pytest

from engine_harness.request_stream import RequestStream
from tests.rolling.conftest import Checkout
from tests.rolling.test_redeploys import AFTER, ROUTES, Record, code_change, deployed

pytestmark = [pytest.mark.engine, pytest.mark.soak]

REDEPLOYS = 30


def test_many_one_replica_code_changes_fail_no_request(
    checkout: Checkout, record_property: Record
) -> None:
    first = deployed(checkout, apiReplicas="1")
    replaced_images: set[str] = set()
    seconds: list[float] = []
    try:
        with RequestStream(first.url) as stream:
            for _ in range(REDEPLOYS):
                replaced_images |= {c.image.id for c in checkout.api_containers()}
                checkout.edit(ROUTES, code_change())
                seconds.append(deployed(checkout).seconds)
            stream.wait_for_successes(len(stream.tally.results) + AFTER)
    finally:
        # Each release's image, left untagged by the next one's build.
        for image in replaced_images:
            with contextlib.suppress(docker.errors.APIError):
                checkout.client.images.remove(image, noprune=True)

    tally = stream.tally
    record_property(
        "figure",
        f"{len(seconds)} redeploys ({min(seconds):.1f}-{max(seconds):.1f} s each);"
        f" {tally.summary()}",
    )
    assert len(seconds) == REDEPLOYS
    assert not tally.failed, f"{tally.summary()}; first failures: {tally.failed[:5]}"
