"""A steady stream of GET requests through the proxy, counted while a redeploy runs.

Clients send back to back, with no pause: most keep their connection alive (as browsers,
SDKs and load balancers do), one opens a new connection per request. Every request has a
timeout; each result is kept with its time, so a failure can be told apart from a slow answer.
"""

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from types import TracebackType

import requests

# A request slower than this counts as failed (the deploy must never make one wait so long).
SLOW = 2.0
REQUEST_TIMEOUT = 10.0


@dataclass(frozen=True)
class Result:
    at: float  # monotonic time the request started
    outcome: str  # "200", another status, or the exception's type
    seconds: float


@dataclass
class Tally:
    results: list[Result] = field(default_factory=list)

    @property
    def failed(self) -> list[Result]:
        return [r for r in self.results if r.outcome != "200" or r.seconds >= SLOW]

    @property
    def outcomes(self) -> dict[str, int]:
        """How many requests ended each way ("200", another status, an exception's type)."""
        return dict(Counter(r.outcome for r in self.results))

    @property
    def slowest(self) -> float:
        return max((r.seconds for r in self.results), default=0.0)

    def summary(self) -> str:
        return (
            f"{len(self.results)} requests, {len(self.failed)} failed or slower than {SLOW} s"
            f" ({self.outcomes}), slowest {self.slowest:.3f} s"
        )

    def outage(self) -> float:
        """The longest time between the start of a failed request and the next success."""
        longest, failing_since = 0.0, None
        for result in sorted(self.results, key=lambda r: r.at):
            if result.outcome != "200":
                failing_since = result.at if failing_since is None else failing_since
            elif failing_since is not None:
                longest = max(longest, result.at - failing_since)
                failing_since = None
        return longest


class RequestStream:
    """`with RequestStream(url) as stream:` sends GETs until the block ends; `stream.tally`.
    HTTPS is verified with `ca_file` (the stack's CA), else as `requests` does by default."""

    def __init__(
        self, url: str, kept_alive: int = 3, fresh: int = 1, ca_file: str | None = None
    ) -> None:
        self.url = url
        self.verify: str | bool = ca_file or True
        self.tally = Tally()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._client, args=(keep,), daemon=True)
            for keep in [True] * kept_alive + [False] * fresh
        ]

    def _client(self, keep_alive: bool) -> None:
        session = requests.Session()
        while not self._stop.is_set():
            if not keep_alive:
                session.close()
                session = requests.Session()
            started = time.monotonic()
            try:
                # verify per request: a session's would give way to REQUESTS_CA_BUNDLE.
                response = session.get(self.url, timeout=REQUEST_TIMEOUT, verify=self.verify)
                outcome = str(response.status_code)
            except requests.RequestException as error:
                outcome = type(error).__name__
            result = Result(started, outcome, time.monotonic() - started)
            with self._lock:
                self.tally.results.append(result)
        session.close()

    def wait_for_successes(self, count: int, timeout: float = 30.0) -> None:
        """Until the stream has `count` successes (the stack serves before the change)."""
        deadline = time.monotonic() + timeout
        while sum(r.outcome == "200" for r in self.tally.results) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"the stream never got going: {self.tally.summary()}")
            time.sleep(0.05)

    def __enter__(self) -> "RequestStream":
        for thread in self._threads:
            thread.start()
        self.wait_for_successes(20)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=REQUEST_TIMEOUT + 5)
