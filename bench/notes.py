"""The prose of results.md: how the figures were taken, and what they say about the targets
that depend on the machine's size."""

from typing import Any, Final

from bench.verdict import PROXIED_OVER_DIRECT

METHOD: Final = (
    "wrk runs with 2 threads (1 at concurrency 1: wrk needs a connection per thread) on the"
    " same 2 cores as every server it loads, and its CPU is counted below. All load goes to"
    " loopback: for a container, wrk runs inside the container's own network namespace"
    " (`nsenter --net`) against 127.0.0.1 there, the same listening socket the bridge"
    " network reaches; the published-port scenario runs on the host. The scenarios take"
    " turns run by run, so that a busy moment of the shared host falls on all of them alike."
    " wrk counts a response that is neither 2xx nor 3xx as a non-2xx error; socket errors are"
    " its connect, read, write and timeout (2 s) errors."
)


def _cell(results: dict[str, Any], scenario: str, concurrency: str) -> dict[str, Any]:
    return dict(results["load"][scenario][concurrency]["median"])


def _api_cost(parts: dict[str, float]) -> float:
    return sum(v for k, v in parts.items() if k.startswith("api"))


def _per_request(cell: dict[str, Any], part: str) -> float:
    values = cell["median"]["cpu_us_per_request"]
    if part == "api":
        return _api_cost(values)
    return float(values.get(part, 0.0))


def time_wait_per_request(cell: dict[str, Any]) -> float:
    """TIME_WAIT sockets left in the client's namespace per request, over a cell's runs
    (warm-up included; they all fall within TIME_WAIT's 60 s)."""
    requests = sum(run["requests"] for run in [cell["warmup"], *cell["runs"]])
    return cell["runs"][-1]["time_wait_after"] / requests if requests else 0.0


def analysis(results: dict[str, Any]) -> list[str]:
    """What the CPU figures say about the throughput and latency targets, and the tuning."""
    return [*_targets(results), *_tuning(results), *_sustained(results)]


def _targets(results: dict[str, Any]) -> list[str]:
    top = str(max(results["meta"]["timing"]["concurrencies"]))
    cores = results["meta"]["host"]["cores"]
    baseline, baseline_api, proxied, direct, one = (
        _cell(results, key, top)
        for key in ("baseline", "baseline_api", "proxied", "direct", "direct_one")
    )
    bounds = results["cpu_bounds"]
    per = proxied["cpu_us_per_request"]
    own = bounds["proxied"]["own_cpu_us_per_request"]
    direct_own = bounds["direct"]["own_cpu_us_per_request"]
    # The most a proxied request could cost in all for proxied / direct to reach the target.
    allowed = direct_own / PROXIED_OVER_DIRECT
    ceiling = _cell(results, "ceiling", top)["cpu_us_per_request"]
    return [
        f"- **Ours vs the original post.** {proxied['rps']:.0f} vs {baseline['rps']:.0f} req/s"
        f" ({proxied['rps'] / baseline['rps']:.2f}x). A request through our stack costs"
        f" {own:.0f} µs of CPU in its own processes (proxy {per.get('proxy', 0):.0f}, API"
        f" containers {_api_cost(per):.0f}, wrk {per.get('wrk', 0):.0f}) and"
        f" {per.get('engine', 0):.0f} µs in the Docker engine (log shipping); the original"
        f" post's {bounds['baseline']['own_cpu_us_per_request']:.0f} µs (its nginx"
        f" {baseline['cpu_us_per_request'].get('nginx', 0):.0f}, its one gunicorn process"
        f" {_api_cost(baseline['cpu_us_per_request']):.0f}), and its one process keeps it to"
        f" {baseline['cpu_cores']['machine']:.2f} busy cores of {cores}, where ours used"
        f" {proxied['cpu_cores']['machine']:.2f}. The original post's nginx closes a"
        " connection to its API per request, and without TIME_WAIT reuse (the kernel's"
        " default) its source ports fill up under load, each new connection paying a longer"
        f" search ({max(r['time_wait_after'] for r in results['load']['baseline'][top]['runs'])}"
        " sockets in TIME_WAIT after a run); that is its setup. Its gunicorn alone, loaded"
        f" directly with no nginx, served {baseline_api['rps']:.0f} req/s, an upper bound for"
        f" the whole setup: ours is {proxied['rps'] / baseline_api['rps']:.2f}x that.",
        f"- **Proxied vs direct.** The proxy's overhead is measured against the API capacity it"
        f" fronts: one API container with all the stack's gunicorn workers, loaded directly,"
        f" served {direct['rps']:.0f} req/s at {direct_own:.0f} µs of CPU per request in its own"
        f" processes (API {_api_cost(direct['cpu_us_per_request']):.0f}, wrk"
        f" {direct['cpu_us_per_request'].get('wrk', 0):.0f}). Through the proxy a request costs"
        f" {own:.0f} µs: nginx's {per.get('proxy', 0):.0f} µs, and the API's share is"
        f" {_api_cost(per):.0f} µs (it also parses the proxy's forwarded headers, over"
        " connections that cross the bridge instead of loopback). The proxy runs on the same"
        f" {cores} cores as the API, so its whole cost comes off the throughput: proxied /"
        f" direct is about {direct_own:.0f} / {own:.0f} = {direct_own / own:.2f} by CPU,"
        f" {proxied['rps'] / direct['rps']:.2f} measured. {PROXIED_OVER_DIRECT} would need a"
        f" proxied request to cost at most {allowed:.0f} µs in all, {allowed - direct_own:.0f} µs"
        " more than a direct one; nginx alone costs"
        f" {per.get('proxy', 0):.0f} µs (its floor here, answering a fixed response with no"
        f" upstream and no log: {ceiling.get('nginx', 0):.0f} µs{_bare(results)}). With a"
        " fixed number of"
        " connections, latency is connections / throughput"
        f" (Little's law): mean {proxied['mean_ms']:.1f} ms through the proxy vs"
        f" {direct['mean_ms']:.1f} ms direct, p99 {proxied['p99_ms']:.1f} vs"
        f" {direct['p99_ms']:.1f} ms. One of the stack's"
        f" {len(results['deploys']['cold']['api_containers'])} API containers alone, loaded"
        f" directly, served {one['rps']:.0f} req/s, and the proxy in front of all of them"
        f" {proxied['rps'] / one['rps']:.2f}x that: a comparison with part of the API capacity,"
        " hence the one above.",
    ]


def _bare(results: dict[str, Any]) -> str:
    """What nginx doing nothing but proxying costs, from the setups."""
    bare = _setup(results, "proxy-bare")
    if bare is None:
        return ""
    return (
        f"; proxying and nothing else, a bare nginx: {_per_request(bare, 'proxy'):.0f} µs,"
        f" {bare['median']['rps']:.0f} req/s"
    )


def _setup(results: dict[str, Any], key: str) -> dict[str, Any] | None:
    return next((s for s in results["setups"]["setups"] if s["key"] == key), None)


def _versus(changed: dict[str, Any], deployed: dict[str, Any]) -> str:
    m, d = changed["median"], deployed["median"]
    return (
        f"{m['rps']:.0f} vs {d['rps']:.0f} req/s as deployed, p99 {m['p99_ms']:.1f} vs"
        f" {d['p99_ms']:.1f} ms"
    )


def _tuning(results: dict[str, Any]) -> list[str]:
    deployed = _setup(results, "deployed")
    if deployed is None:
        return []
    lines = []
    no_keepalive = _setup(results, "proxy-no-keepalive")
    if no_keepalive:
        lines.append(
            "- **Upstream keep-alive**: without the pool, nginx opens and closes a connection to"
            f" an API container per request: {_versus(no_keepalive, deployed)};"
            f" the API spends {_per_request(no_keepalive, 'api'):.0f} µs per request instead of"
            f" {_per_request(deployed, 'api'):.0f}, the proxy"
            f" {_per_request(no_keepalive, 'proxy'):.0f} instead of"
            f" {_per_request(deployed, 'proxy'):.0f}, and"
            f" {time_wait_per_request(no_keepalive):.2f} sockets per request are left in"
            f" TIME_WAIT (as deployed: {time_wait_per_request(deployed):.2f}). A pool needs an"
            " `upstream` block; the stack's names the API's network alias with `resolve`"
            " (nginx 1.27.3 and later), so nginx follows containers a deploy replaces, with no"
            " reload, and keeps its pool."
        )
    unbuffered, log_off = _setup(results, "proxy-log-unbuffered"), _setup(results, "proxy-log-off")
    if unbuffered and log_off:
        lines.append(
            "- **nginx's access log**, one JSON line per request to stdout: written line by line"
            f" it costs {_versus(unbuffered, deployed)}, the engine"
            f" {_per_request(unbuffered, 'engine'):.0f} µs per request instead of"
            f" {_per_request(deployed, 'engine'):.0f} and the proxy"
            f" {_per_request(unbuffered, 'proxy'):.0f} instead of"
            f" {_per_request(deployed, 'proxy'):.0f}. The stack writes it in 32k batches flushed"
            " every second and on exit (`buffer=32k flush=1s`): lines reach `docker logs` up to"
            " a second late, and only a killed nginx loses its last second. With no log at all:"
            f" {_versus(log_off, deployed)}."
        )
    unbuffered_responses = _setup(results, "proxy-no-buffering")
    if unbuffered_responses:
        lines.append(
            "- **Response buffering**: nginx reads the API's whole response before sending it"
            " on, so a slow client never holds a gunicorn thread; passing it through unbuffered"
            f" instead: {_versus(unbuffered_responses, deployed)} (this API's responses are a"
            " few dozen bytes). The stack keeps buffering on."
        )
    api_log = _setup(results, "api-access-log")
    if api_log:
        lines.append(
            "- **gunicorn's access log**, a second line per request with the same request id as"
            f" the proxy's: on, {_versus(api_log, deployed)}; the API spends"
            f" {_per_request(api_log, 'api'):.0f} µs per request instead of"
            f" {_per_request(deployed, 'api'):.0f}, the engine"
            f" {_per_request(api_log, 'engine'):.0f} instead of"
            f" {_per_request(deployed, 'engine'):.0f}. Off in the stack by default"
            " (`apiAccessLog: true` turns it on); the image keeps it on when run on its own."
        )
    workers = [
        s for k in ("api-2x4", "api-1x8", "api-1x1", "api-sync") if (s := _setup(results, k))
    ]
    if workers:
        lines.append(
            "- **gunicorn workers and threads** (2 API containers on 2 cores; the stack runs"
            " 1 gthread worker x 4 threads each): "
            + "; ".join(
                f"{s['title'].removeprefix('API: ')}: {_versus(s, deployed)}" for s in workers
            )
            + ". The sync worker closes every connection, so nginx's pool cannot help it."
        )
    return lines


def _sustained(results: dict[str, Any]) -> list[str]:
    sustained = results["sustained"]
    reuse = sustained["tw_reuse"]
    stack, other = sustained["series"]["stack"], sustained["series"]["compare"]

    def summary(series: list[dict[str, Any]]) -> str:
        proxy = [s["cpu_us_per_request"].get("proxy", 0.0) for s in series]
        return (
            f"{series[0]['rps']:.0f} req/s in the first {sustained['segment_s']} s,"
            f" {series[-1]['rps']:.0f} in the last, {min(proxy):.0f}-{max(proxy):.0f} µs of"
            f" proxy CPU per request, at most {max(s['time_wait_after'] for s in series)}"
            " sockets in TIME_WAIT"
        )

    return [
        f"- **Sustained load.** {len(stack)} x {sustained['segment_s']} s without a pause"
        f" through the stack's proxy (`net.ipv4.tcp_tw_reuse={reuse['stack']}`): {summary(stack)};"
        f" the same proxy with `net.ipv4.tcp_tw_reuse={reuse['compare']}`: {summary(other)}."
        " A connection nginx closes first holds its source port in TIME_WAIT for 60 s; without"
        " reuse, once the even ports towards an API container are all held, every new"
        " connection pays a scan of them (before the keep-alive pool, with a connection per"
        " request, this collapsed the throughput within a minute). The pool leaves few such"
        " connections (when more are busy than it keeps idle), and the stack's proxy keeps"
        " the sysctl (namespaced: that container only) so that bursts can't bring the"
        " collapse back.",
    ]


def notes(results: dict[str, Any]) -> list[str]:
    host = results["meta"]["host"]
    return [
        "Why wrk never targets a container's bridge address: this host allows load only on"
        " loopback, so wrk enters the container's network namespace and loads 127.0.0.1 there.",
        "The host is shared with other work (see *other* in the CPU table and the load"
        f" averages: {host['loadavg_start']} at start, {host['loadavg_end']} at end); the"
        " interleaved runs make the ratios fairer than the absolute figures.",
    ]
