"""Every `pulumi up` after the first keeps serving: redeploys on the real engine, each under a
steady stream of requests through the proxy, counted from before the deploy starts until well
after it ended."""

import time
import uuid
from collections.abc import Callable
from signal import SIGTERM

import pytest

from engine_harness.provider_rules import CONTAINER
from engine_harness.request_stream import RequestStream, Tally
from rest_api_stack import HEALTHY_WITHIN_SECONDS
from tests.rolling.conftest import Checkout, Deploy

pytestmark = pytest.mark.engine

# pytest's record_property: ("figure", text) is printed at the end of the run.
Record = Callable[[str, object], None]
ROUTES = "service/rest_api/routes.py"
# Requests the stream must still answer after the deploy returned: by then the old containers
# are gone, and the proxy has stopped asking for them.
AFTER = 200
# A broken release fails the deploy within the health wait, plus its image build and start.
BROKEN_DEPLOY_BOUND = HEALTHY_WITHIN_SECONDS + 30
CANNOT_START = "a release that cannot start"


def deployed(checkout: Checkout, **config: str) -> Deploy:
    result = checkout.up(**config)
    assert result.returncode == 0, f"deploy failed:\n{result.stderr}"
    return result


def code_change() -> str:
    return f"# a release's change {uuid.uuid4().hex}\n"


def redeploy(checkout: Checkout, url: str, record: Record, **config: str) -> tuple[Deploy, Tally]:
    """Deploy again with a stream of requests running from before it starts until AFTER more
    were answered after it ended; record the figures."""
    with RequestStream(url) as stream:
        result = deployed(checkout, **config)
        stream.wait_for_successes(len(stream.tally.results) + AFTER)
    record("figure", f"deploy {result.seconds:.1f} s; {stream.tally.summary()}")
    return result, stream.tally


def assert_none_failed(tally: Tally, what: str) -> None:
    """Every request answered 200, none slower than SLOW (2 s)."""
    assert not tally.failed, f"{what}: {tally.summary()}; first failures: {tally.failed[:5]}"


@pytest.mark.parametrize("replicas", ["2", "1"])
def test_a_code_change_fails_no_request(
    checkout: Checkout, replicas: str, record_property: Record
) -> None:
    first = deployed(checkout, apiReplicas=replicas)
    old = {c.id for c in checkout.api_containers()}
    checkout.edit(ROUTES, code_change())

    what = f"code change, {replicas} API replica(s)"
    _, tally = redeploy(checkout, first.url, record_property)

    assert_none_failed(tally, what)
    new = checkout.api_containers()
    assert len(new) == int(replicas)
    assert not old & {c.id for c in new}, "the API containers were not replaced"


def test_a_config_change_that_replaces_the_api_fails_no_request(
    checkout: Checkout, record_property: Record
) -> None:
    first = deployed(checkout)
    old = {c.id for c in checkout.api_containers()}

    what = "config change (apiWorkers 1 -> 2)"
    _, tally = redeploy(checkout, first.url, record_property, apiWorkers="2")

    assert_none_failed(tally, what)
    new = checkout.api_containers()
    assert not old & {c.id for c in new}, "the API containers were not replaced"
    for container in new:
        assert "WEB_CONCURRENCY=2" in container.attrs["Config"]["Env"], container.name


def test_a_broken_release_is_contained_and_a_fixed_one_converges(
    checkout: Checkout, record_property: Record
) -> None:
    first = deployed(checkout)
    old = {c.name for c in checkout.api_containers()}
    checkout.edit(ROUTES, f'raise RuntimeError("{CANNOT_START}")\n')

    with RequestStream(first.url) as stream:
        broken = checkout.up()
        # What the engine leaves: the new containers, created, run (never healthy) and are
        # recorded; their health waits failed and are not; the old containers are still
        # there, serving, marked for deletion at the end of the next successful deploy.
        state = {r["outputs"].get("name"): r for r in checkout.state() if r["typ"] == CONTAINER}
        running = {c.name for c in checkout.api_containers()}
        checkout.restore(ROUTES)
        fixed = deployed(checkout)
        stream.wait_for_successes(len(stream.tally.results) + AFTER)

    record_property(
        "figure",
        f"broken release: deploy failed after {broken.seconds:.1f} s; fixed release:"
        f" deploy {fixed.seconds:.1f} s; {stream.tally.summary()}",
    )
    assert broken.returncode != 0
    # The error names the container and shows its last health check and logs.
    for said in (
        f"{checkout.prefix}-api-",
        "is unhealthy",
        "last health check: exit 1: health check http://127.0.0.1:8000/",
        "Connection refused",
        CANNOT_START,
    ):
        assert said in broken.stderr, f"{said!r} not in:\n{broken.stderr}"
    assert broken.seconds < BROKEN_DEPLOY_BOUND, broken.stderr
    live = {name for name, record in state.items() if not record["delete"]}
    failed = {name for name in live if name.startswith(f"{checkout.prefix}-api-")}
    assert len(failed) == 2 and failed <= running and not failed & old, (failed, running)
    assert {name for name, record in state.items() if record["delete"]} == old
    assert old <= running
    assert_none_failed(stream.tally, "broken release, then a fixed one")
    # Converged: only the fixed release's containers, healthy; nothing marked or failed.
    now = checkout.api_containers()
    assert len(now) == 2 and not {c.name for c in now} & (old | failed)
    assert all(c.attrs["State"]["Health"]["Status"] == "healthy" for c in now)
    assert not any(r["delete"] or r["init_errors"] for r in checkout.state())


def test_a_proxy_change_replaces_it_with_a_short_gap(
    checkout: Checkout, record_property: Record
) -> None:
    """The proxy owns the published port: the old one must let go of it before a new one can
    take it. The gap is measured and reported; the stack serves again right after."""
    first = deployed(checkout)
    proxy_before = checkout.client.containers.get(f"{checkout.prefix}-proxy").id
    checkout.edit("proxy/nginx.conf", f"# a proxy change {uuid.uuid4().hex}\n")

    _, tally = redeploy(checkout, first.url, record_property)

    gap = tally.outage()
    record_property("figure", f"no answer for {gap:.2f} s")
    assert checkout.client.containers.get(f"{checkout.prefix}-proxy").id != proxy_before
    assert 0 < gap < 10, tally.summary()
    assert all(r.outcome == "200" for r in tally.results[-AFTER:])


def test_old_api_containers_go_only_after_the_new_ones_are_healthy(checkout: Checkout) -> None:
    """The order a deploy runs in, seen in the engine's events: every new API container is
    healthy before the first old one is signalled, and the old ones get SIGTERM and stop within
    their grace period (no SIGKILL)."""
    deployed(checkout)
    old = {c.name for c in checkout.api_containers()}
    checkout.edit(ROUTES, code_change())
    since = time.time()
    deployed(checkout)
    new = {c.name for c in checkout.api_containers()}

    events = checkout.client.events(
        since=int(since), until=int(time.time()) + 1, decode=True, filters={"type": "container"}
    )
    seen = [(e["timeNano"], e["Action"], e["Actor"]["Attributes"]) for e in events]
    healthy = [t for t, action, a in seen if a["name"] in new and action.endswith(": healthy")]
    kills = [(t, a["name"], a.get("signal")) for t, action, a in seen if action == "kill"]
    assert len(healthy) == len(new), seen
    assert {name for _, name, _ in kills} == old, kills
    assert max(healthy) < min(t for t, _, _ in kills), seen
    assert {signal for _, _, signal in kills} == {str(int(SIGTERM))}, kills
