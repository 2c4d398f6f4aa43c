"""The prose of results.md: how the figures were taken, and what they say about the targets
that depend on the machine's size."""

from typing import Any, Final

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


def analysis(results: dict[str, Any]) -> list[str]:
    """What the CPU figures say about the throughput targets."""
    top = str(max(results["meta"]["timing"]["concurrencies"]))
    cores = results["meta"]["host"]["cores"]
    baseline, proxied, direct = (
        _cell(results, key, top) for key in ("baseline", "proxied", "direct")
    )
    bounds = results["cpu_bounds"]
    needed = 2.5 * baseline["rps"]
    own = bounds["proxied"]["own_cpu_us_per_request"]
    per = proxied["cpu_us_per_request"]
    lines = [
        f"- **Ours vs the original post.** 2.5 x the original post's {baseline['rps']:.0f}"
        f" req/s is {needed:.0f} req/s. A request through our stack costs {own:.0f} µs of CPU"
        f" in its own processes (proxy {per.get('proxy', 0):.0f}, API containers"
        f" {_api_cost(per):.0f}, wrk {per.get('wrk', 0):.0f}), plus"
        f" {per.get('engine', 0):.0f} µs in the Docker engine shipping its two log lines. At"
        f" that cost {cores} cores serve at most {bounds['proxied']['cpu_bound_rps']:.0f}"
        f" req/s even with nothing else running:"
        f" {bounds['proxied']['cpu_bound_rps'] / baseline['rps']:.2f}x the original post,"
        f" short of 2.5x (measured: {proxied['rps']:.0f} req/s with"
        f" {proxied['cpu_cores']['machine']:.2f} of {cores} cores busy). The original post"
        f" costs {bounds['baseline']['own_cpu_us_per_request']:.0f} µs per request: one"
        " gunicorn process with no access log behind an nginx logging to a file; its gunicorn"
        f" used {_api_cost(baseline['cpu_cores']):.2f} cores.",
        f"- **Proxied vs direct.** Direct, one API container serves {direct['rps']:.0f} req/s"
        f" at {_api_cost(direct['cpu_us_per_request']):.0f} µs of API CPU per request over"
        " keep-alive connections. Through the proxy the same request also costs nginx's"
        f" {per.get('proxy', 0):.0f} µs, and the API's share rises to {_api_cost(per):.0f} µs"
        " because nginx opens a new TCP connection to an API container for every request: an"
        " upstream keep-alive pool needs an `upstream` block, whose servers nginx 1.22 resolves"
        " once at start-up (open-source nginx has no `resolve` on upstream servers before"
        " 1.27.3), while the stack must follow replaced API containers, which only the"
        " resolver with a variable proxy_pass does. Proxy and API share the same 2 cores, so"
        " the proxy's whole cost comes off the throughput. With a fixed number of"
        " connections, latency is connections / throughput (Little's law): mean latency"
        f" {proxied['mean_ms']:.1f} ms through the proxy vs {direct['mean_ms']:.1f} ms direct,"
        f" p99 {proxied['p99_ms']:.1f} vs {direct['p99_ms']:.1f} ms; the latency target falls"
        " with the throughput one.",
    ]
    return [
        *lines,
        _baseline_time_wait(results),
        *_fresh(results),
        *_tuning(results),
        *_sustained(results),
    ]


def _fresh(results: dict[str, Any]) -> list[str]:
    """Ours and the original post with no TIME_WAIT backlog: a fresh proxy (the variants'
    "as shipped") and the original post's gunicorn alone, which bounds its setup from above."""
    variants = {variant["key"]: variant for variant in results["proxy_variants"]["variants"]}
    sweep = {config["key"]: config for config in results["sweep"]["configs"]}
    if "shipped" not in variants or "defaults" not in sweep:
        return []
    ours = variants["shipped"]["median"]
    alone = sweep["defaults"]["new_connection"]["median"]
    direct = results["load"]["direct"][str(results["proxy_variants"]["concurrency"])]["median"]
    own = sum(
        v for k, v in ours["cpu_us_per_request"].items() if k not in {"machine", "other", "engine"}
    )
    cores = results["meta"]["host"]["cores"]
    return [
        "- **Without a TIME_WAIT backlog.** A fresh proxy container of the same image and"
        f" config in front of the same API containers served {ours['rps']:.0f} req/s"
        " (*Proxy configuration variants*, as shipped); the original post's gunicorn alone,"
        " with a new connection per request as its nginx makes them and no nginx in the way,"
        f" served {alone['rps']:.0f} req/s, a ceiling for its whole setup (its nginx only adds"
        " work on the same cores). So with no backlog ours is"
        f" {ours['rps'] / alone['rps']:.2f}x the original post or better, and proxied /"
        f" direct is {ours['rps'] / direct['rps']:.2f}. Our request costs {own:.0f} µs of CPU"
        f" in its own processes then (plus {ours['cpu_us_per_request'].get('engine', 0):.0f} µs"
        f" of log shipping in the engine), so {cores} cores top out near"
        f" {cores * 1e6 / own:.0f} req/s, {cores * 1e6 / own / alone['rps']:.2f}x what the"
        " original post's gunicorn did alone: 2.5x is out of reach on this machine with two"
        " access logs per request and a new upstream connection per request.",
    ]


def _baseline_time_wait(results: dict[str, Any]) -> str:
    """How the original post's nginx fared as its closed upstream connections piled up."""
    cells = results["load"]["baseline"]
    parts = []
    for concurrency, cell in cells.items():
        nginx = cell["median"]["cpu_us_per_request"].get("nginx", 0.0)
        time_wait = max(run["time_wait_after"] for run in cell["runs"])
        parts.append(f"{nginx:.0f} µs at c={concurrency} ({time_wait} in TIME_WAIT)")
    return (
        "- **The original post's nginx and TIME_WAIT.** It opens a connection per request and"
        " closes it first, all towards one API address, with the kernel's default TIME_WAIT"
        " handling (no reuse off loopback). Its CPU per request: "
        + ", ".join(parts)
        + ". Once half of its source ports sit in TIME_WAIT, each new connection pays the"
        " scan described under *Sustained load*, so its figures depend on how much load came in"
        " the minute before (the scenarios take turns run by run); the next point compares"
        " without that backlog."
    )


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


def _tuning(results: dict[str, Any]) -> list[str]:
    sweep = {config["key"]: config for config in results["sweep"]["configs"]}
    variants = {variant["key"]: variant for variant in results["proxy_variants"]["variants"]}
    lines = []
    if "gthread-2x4" in sweep and "gthread-2x4-nolog" in sweep:
        on, off = sweep["gthread-2x4"]["keepalive"], sweep["gthread-2x4-nolog"]["keepalive"]
        lines.append(
            "- **gunicorn's access log.** In one API container (gthread, 2 x 4, keep-alive) the"
            f" access log line costs {_per_request(on, 'api') - _per_request(off, 'api'):.0f} µs"
            f" of the API's {_per_request(on, 'api'):.0f} µs per request, and the engine"
            f" {_per_request(on, 'engine') - _per_request(off, 'engine'):.0f} µs more to ship it;"
            f" {on['median']['rps']:.0f} vs {off['median']['rps']:.0f} req/s. It stays on by"
            " default (the tests and operators rely on it); GUNICORN_ACCESS_LOG=off now turns"
            " it off where the proxy's log, which has the same request id, is enough."
        )
    if "shipped" in variants and "upstream-keepalive-header" in variants:
        close, keep = variants["shipped"], variants["upstream-keepalive-header"]
        lines.append(
            '- **Upstream `Connection: close`** (changed from `Connection: ""`, which only'
            " serves an upstream keep-alive pool, and there is none): the API containers spend"
            f" {_per_request(close, 'api'):.0f} µs per request instead of"
            f" {_per_request(keep, 'api'):.0f}, the proxy {_per_request(close, 'proxy'):.0f}"
            f" instead of {_per_request(keep, 'proxy'):.0f}; {close['median']['rps']:.0f} vs"
            f" {keep['median']['rps']:.0f} req/s; TIME_WAIT sockets left in the proxy's"
            f" namespace per request {time_wait_per_request(close):.2f} instead of"
            f" {time_wait_per_request(keep):.2f}."
        )
    if {"shipped", "access-log-off", "access-log-buffered"} <= set(variants):
        on, off = variants["shipped"], variants["access-log-off"]
        batched = variants["access-log-buffered"]
        lines.append(
            "- **nginx's access log** (JSON lines to stdout) costs the proxy"
            f" {_per_request(on, 'proxy') - _per_request(off, 'proxy'):.0f} µs per request and"
            f" the engine {_per_request(on, 'engine') - _per_request(off, 'engine'):.0f} µs."
            " Written in 64k batches (`buffer=64k flush=1s`) it costs the proxy"
            f" {_per_request(on, 'proxy') - _per_request(batched, 'proxy'):.0f} µs less and the"
            f" engine {_per_request(on, 'engine') - _per_request(batched, 'engine'):.0f} µs less"
            f" ({batched['median']['rps']:.0f} vs {on['median']['rps']:.0f} req/s); not adopted:"
            " each line would reach `docker logs` up to a second late, and a killed nginx would"
            " lose its batch."
        )
    return lines


def _sustained(results: dict[str, Any]) -> list[str]:
    sustained = results["sustained"]
    reuse = sustained["tw_reuse"]
    with_reuse = "stack" if reuse["stack"] == "1" else "compare"
    without = "compare" if with_reuse == "stack" else "stack"
    name = {"stack": "the stack's proxy", "compare": "the same proxy"}
    held, fell = sustained["series"][with_reuse], sustained["series"][without]

    def proxy_us(segment: dict[str, Any]) -> float:
        return float(segment["cpu_us_per_request"].get("proxy", 0.0))

    worst = max(fell, key=proxy_us)
    ships = (
        "The stack's proxy sets it (infra/rest_api_stack.py)."
        if with_reuse == "stack"
        else "The stack's proxy does not set it: that is the Pulumi program's job."
    )
    return [
        f"- **Sustained load.** {len(fell)} x {sustained['segment_s']} s through"
        f" {name[without]} with `net.ipv4.tcp_tw_reuse={reuse[without]}`:"
        f" {fell[0]['rps']:.0f} req/s at first, {fell[-1]['rps']:.0f} at the end; the proxy's"
        f" CPU per request went from {proxy_us(fell[0]):.0f} µs to {proxy_us(worst):.0f} µs"
        f" with {worst['time_wait_after']} of its {sustained['source_ports']} source ports"
        " towards the API containers in TIME_WAIT. nginx closes most upstream connections"
        " first, even with `Connection: close` (it has the whole response before the API's FIN"
        " arrives), and Linux gives connect() the even source ports first and scans all of"
        " them before trying an odd one: once the even ones towards an API container are all in"
        " TIME_WAIT, every new upstream connection pays that scan. With"
        f" `net.ipv4.tcp_tw_reuse=1` ({name[with_reuse]}) TIME_WAIT ports are reused for new"
        " outgoing connections (safe with TCP timestamps): it held"
        f" {held[0]['rps']:.0f} then {held[-1]['rps']:.0f} req/s at {proxy_us(held[-1]):.0f} µs"
        f" per request. {ships} nginx.conf cannot fix this, and nginx 1.22 has no upstream"
        " keep-alive that follows replaced containers.",
    ]


def notes(results: dict[str, Any]) -> list[str]:
    host = results["meta"]["host"]
    return [
        "No upstream keep-alive: nginx 1.22 (Debian bookworm, the offline proxy base image) has"
        " no `resolve` parameter on upstream servers, so an `upstream` block with a `keepalive`"
        " pool would pin the API containers' start-up addresses. The proxy keeps its"
        " resolver-based variable `proxy_pass`, which follows replaced containers, and pays a"
        " new upstream connection per request (see the sweep's new-connection column).",
        "Why wrk never targets a container's bridge address: this host allows load only on"
        " loopback, so wrk enters the container's network namespace and loads 127.0.0.1 there.",
        "The host is shared with other work (see *other* in the CPU table and the load"
        f" averages: {host['loadavg_start']} at start, {host['loadavg_end']} at end); the"
        " interleaved runs make the ratios fairer than the absolute figures.",
    ]
