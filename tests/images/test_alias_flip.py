"""The race behind a one-replica redeploy's rare 502, staged again and again (soak): the API's
name loses every address but one while requests wait on connections to the others."""

import time
from collections.abc import Callable

import pytest

import contract
from engine_harness.request_stream import RequestStream
from tests.images.stack import Running, Stack, get, wait_for
from tests.images.test_images import fail_connections

pytestmark = [pytest.mark.engine, pytest.mark.soak]

FLIPS = 12
GONE = 5
# Until the proxy's lookups (every second) have the gone containers again and their rest after
# a failed attempt (2 to 3 s) is over: requests wait on connections to them once more.
BACK_IN_THE_NAME = 3.5
# Until the proxy's lookups have dropped them.
OUT_OF_THE_NAME = 2.5


def test_the_name_left_with_one_address_fails_no_request(
    stack: Stack, record_property: Callable[[str, object], None]
) -> None:
    """Containers that answer no connection (as removed ones whose addresses the proxy still
    has) leave the API's name at once, leaving one that serves. A request waiting on a
    connection to one of them when the proxy's lookup drops them ends its tries (one server
    left), and must be sent once more (@retry) rather than answered 502."""
    stack.create_network()
    serving = stack.start_api("serving")
    gone = [stack.start_api(f"gone-{number}") for number in range(GONE)]
    for container in gone:
        fail_connections(container, "timed-out", every=1)
    proxy = stack.start_proxy()
    url = Running(stack, serving, proxy).url
    wait_for(
        lambda: get(f"{url}/"),
        lambda response: response.status_code == 200,
        timeout=30,
        what="GET / through the proxy",
    )
    assert stack.network is not None

    with RequestStream(f"{url}/", kept_alive=8, fresh=0) as stream:
        for flip in range(FLIPS):
            if flip:
                for container in gone:
                    stack.network.connect(container, aliases=[contract.API_ALIAS])
            time.sleep(BACK_IN_THE_NAME)
            for container in gone:
                stack.network.disconnect(container)
            time.sleep(OUT_OF_THE_NAME)

    tally = stream.tally
    record_property("figure", f"{FLIPS} flips; {tally.summary()}")
    assert not tally.failed, f"{tally.summary()}; first failures: {tally.failed[:5]}"
