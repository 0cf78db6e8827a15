"""The fault catalogue: each row a small mesh, steady traffic, one fault made as it happens in
life (a signal to a process, a port mistake, a bad version deployed, a policy or route applied)
and the finding an on-call engineer would name first. Never an edit of tulle's own state.

Subjects follow the contract of `tulle diagnose` (tulle.diagnose.model): the most specific
thing to fix (the instance's proxy, the route rule, the policy), the service as context. A
route rule without a name is its 0-based index: ``httproute/books.default#0``.
"""

from __future__ import annotations

import os
import signal
import threading
import urllib.request
from collections.abc import Callable

from tests.e2e.faults.harness import Scenario, Scene, expect
from tests.support.mesh import wait_for
from tests.support.ports import free_port

BOOKS = "service/books.default"
ROUTE = "httproute/books.default"
RULE0 = "httproute/books.default#0"
CP = "mesh/controlplane"
Step = Callable[[Scene], None]


def proxy(name: str) -> str:
    return f"proxy/{name}.default"


# -- resources, as a person writes them ------------------------------------------------------

def route(rule: str = "", backends: str = "[{name: books}]", name: str = "books") -> str:
    """An HTTPRoute for books with one unnamed rule (index 0): ``rule`` adds its fields."""
    return (f"apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n"
            f"metadata: {{name: {name}}}\nspec:\n  parentRefs: [{{name: books}}]\n  rules:\n"
            f"  - backendRefs: {backends}\n" + "".join(f"    {line}\n"
                                                       for line in rule.splitlines() if line))


def policy(name: str, spec: str, target: str = "{kind: Service, name: books}") -> str:
    return (f"apiVersion: tulle.io/v1alpha1\nkind: TrafficPolicy\nmetadata: {{name: {name}}}\n"
            f"spec:\n  targetRefs: [{target}]\n" + "".join(f"  {line}\n"
                                                        for line in spec.splitlines() if line))


def subsets(*versions: str) -> str:
    return "---\n".join(
        f"apiVersion: tulle.io/v1alpha1\nkind: Service\nmetadata: {{name: books-{v}}}\n"
        f"spec:\n  selector: {{service: books, version: {v}}}\n" for v in versions)


def split(*weights: tuple[str, int]) -> str:
    return "[" + ", ".join(f"{{name: books-{v}, weight: {w}}}" for v, w in weights) + "]"


ROUTE_TO_HTTPROUTE = ("{group: gateway.networking.k8s.io, kind: HTTPRoute, name: books}")


# -- setups ----------------------------------------------------------------------------------

SERVICE = ("apiVersion: tulle.io/v1alpha1\nkind: Service\nmetadata: {name: books}\n"
           "spec: {protocol: http}\n")


def declared(scene: Scene) -> None:
    """books is declared, as a team does before its first instance: it outlives them."""
    scene.apply(SERVICE)


def one_books(scene: Scene, *urls: str) -> None:
    declared(scene)
    scene.backend("books-1")
    scene.caller(*(urls or ("http://books/",)))


def two_books(scene: Scene) -> None:
    declared(scene)
    scene.backend("books-1")
    scene.backend("books-2")
    scene.caller("http://books/")


def three_books(scene: Scene) -> None:
    declared(scene)
    for i in (1, 2, 3):
        scene.backend(f"books-{i}")
    scene.caller("http://books/")


def with_route(rule: str, instances: int = 1) -> Step:
    def setup(scene: Scene) -> None:
        declared(scene)
        for i in range(1, instances + 1):
            scene.backend(f"books-{i}")
        scene.apply(route(rule))
        scene.caller("http://books/")
    return setup


def v1_only(scene: Scene) -> None:
    """v1 serving everything, v2 declared: a canary's fault deploys v2 (see deploy_canary)."""
    declared(scene)
    scene.backend("books-1", version="v1")
    scene.apply(subsets("v1", "v2") + "---\n" + route(backends=split(("v1", 100))))
    scene.caller("http://books/")


def deploy_canary(v2_flags: tuple[str, ...] = (), retry: bool = False) -> Step:
    def fault(scene: Scene) -> None:
        scene.backend("books-2", version="v2", flags=v2_flags)
        scene.apply(route("retry: {attempts: 3, backoff: 10ms}" if retry else "",
                          backends=split(("v1", 80), ("v2", 20))))
    return fault


# -- faults ----------------------------------------------------------------------------------

def stop_workload(name: str) -> Step:
    def fault(scene: Scene) -> None:
        scene.workload(name).stop()
    return fault


def kill_app(name: str) -> Step:
    def fault(scene: Scene) -> None:
        os.kill(scene.app_pid(name), signal.SIGKILL)
    return fault


def freeze_app(name: str) -> Step:
    def fault(scene: Scene) -> None:
        scene.freeze(scene.app_pid(name))
    return fault


def freeze_envoy(name: str) -> Step:
    def fault(scene: Scene) -> None:
        scene.freeze(scene.envoy_pid(name))
    return fault


def freeze_agent(name: str) -> Step:
    def fault(scene: Scene) -> None:
        scene.freeze(scene.agent_pid(name))
    return fault


def freeze_controlplane(scene: Scene) -> None:
    scene.freeze(int(scene.mesh.status()["pid"]))


def kill_controlplane(scene: Scene) -> None:
    os.kill(int(scene.mesh.status()["pid"]), signal.SIGKILL)


def control(name: str, **settings: object) -> Step:
    def fault(scene: Scene) -> None:
        scene.control(name, **settings)
    return fault


def control_all(names: tuple[str, ...], **settings: object) -> Step:
    def fault(scene: Scene) -> None:
        for name in names:
            scene.control(name, **settings)
    return fault


def apply(text: str) -> Step:
    def fault(scene: Scene) -> None:
        scene.apply(text)
    return fault


def start_bad(flags: tuple[str, ...] = (), port_mistake: bool = False) -> Step:
    """A new service `bad` goes live and a client starts calling it."""
    def fault(scene: Scene) -> None:
        scene.backend("bad-1", "bad", flags=flags, wait=False,
                      listen=free_port() if port_mistake else None)
        scene.caller("http://bad/", name="client-2")
    return fault


def crash_envoy_repeatedly(name: str, times: int = 3) -> Step:
    """An Envoy that keeps crashing: each one its agent starts is killed, ``times`` times."""
    def fault(scene: Scene) -> None:
        for _ in range(times):
            pid = scene.envoy_pid(name)
            os.kill(pid, signal.SIGKILL)

            def restarted(old: int = pid) -> bool:
                return scene.envoy_pid(name) != old

            wait_for(f"{name}'s agent to start a new Envoy", restarted, timeout=20,
                     interval=0.1)
    return fault


def plaintext_client(scene: Scene) -> None:
    """Someone outside the mesh calls books-1's sidecar directly, without a certificate."""
    port = int(scene.mesh.workload("books-1")["inboundPort"])
    halt = threading.Event()

    def run() -> None:
        while not halt.is_set():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2):
                    pass
            except OSError:
                pass
            halt.wait(0.2)  # pacing: 5 calls a second

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    scene.threads.append(halt.set)


def new_client_path(path: str) -> Step:
    """A new client release starts calling ``path``."""
    def fault(scene: Scene) -> None:
        scene.caller(f"http://books{path}", name="client-2")
    return fault


# -- healthy operations ----------------------------------------------------------------------

def scale_up(scene: Scene) -> None:
    scene.backend("books-3")


def rolling_restart(scene: Scene) -> None:
    for old, new in (("books-1", "books-1b"), ("books-2", "books-2b")):
        scene.backend(new)
        scene.workload(old).stop()  # graceful: SIGINT, and wait for it to exit


# -- the catalogue ---------------------------------------------------------------------------

POOL = "connectionPool: {maxConnections: 1, maxPendingRequests: 1, maxRequests: 1}"
OUTLIERS = ("outlierDetection: {consecutive5xx: 3, interval: 500ms, baseEjectionTime: 30s, "
            "maxEjectionPercent: 50}")
CHAOS_ABORT = "faultInjection: {abort: {httpStatus: 503, percent: 25}}"
CHAOS_DELAY = "faultInjection: {delay: {fixedDelay: 500ms, percent: 50}}"
CHAOS_ROUTE = "faultInjection: {abort: {httpStatus: 500, percent: 30}}"


def _healthy_canary(scene: Scene) -> None:
    deploy_canary()(scene)


def _to_missing_version(scene: Scene) -> None:
    scene.apply(subsets("v3") + "---\n" + route(backends=split(("v1", 70), ("v3", 30))))


def _undeclared_books(scene: Scene) -> None:
    """books known only from its instance (no Service resource), as after `tulle run`."""
    scene.backend("books-1")
    scene.caller("http://books/")


def _slow_books(scene: Scene) -> None:
    declared(scene)
    scene.backend("books-1", flags=("--delay-ms", "300"))
    scene.caller("http://books/")


def _three_books_with_outliers(scene: Scene) -> None:
    three_books(scene)
    scene.apply(policy("books-outliers", OUTLIERS))


def _two_books_with_retries(scene: Scene) -> None:
    two_books(scene)
    scene.apply(route("retry: {attempts: 3, backoff: 10ms}"))


def _two_versions(scene: Scene) -> None:
    declared(scene)
    scene.backend("books-1", version="v1")
    scene.backend("books-2", version="v2")
    scene.apply(subsets("v1", "v2") + "---\n" + route(backends=split(("v1", 80), ("v2", 20))))
    scene.caller("http://books/")


def _prefixed_books(scene: Scene) -> None:
    declared(scene)
    scene.backend("books-1", flags=("--prefix", "/api"))
    scene.apply(route())
    scene.caller("http://books/api/books")


REWRITE = ("filters:\n- type: URLRewrite\n"
           "  urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /v2}}")


def _legacy_backend(scene: Scene) -> None:
    _prefixed_books(scene)
    scene.backend("legacy-1", "books-legacy", flags=("--prefix", "/legacy"))


def _search_only(scene: Scene) -> None:
    declared(scene)
    scene.backend("books-1")
    scene.apply(route(name="books").replace(
        "  - backendRefs: [{name: books}]\n",
        "  - name: search\n    matches: [{path: {type: PathPrefix, value: /search}}]\n"
        "    backendRefs: [{name: books}]\n"))
    scene.caller("http://books/search?q=1")


def _canary_service(scene: Scene) -> None:
    one_books(scene)
    scene.backend("canary-1", "books-canary", flags=("--fail-pct", "100"))


def _healthy_404s(scene: Scene) -> None:
    declared(scene)
    scene.backend("books-1", flags=("--prefix", "/api"))
    scene.backend("books-2", flags=("--prefix", "/api"))
    scene.caller("http://books/api/1", "http://books/api/2", "http://books/missing",
                 "http://books/status/401", "http://books/api/3", "http://books/status/404")


def _weights_shift(scene: Scene) -> None:
    scene.apply(route(backends=split(("v1", 50), ("v2", 50))))


FAULTS: tuple[Scenario, ...] = (
    # -- existing findings: endpoints, processes, ports ---------------------------------------
    Scenario("instance-stopped", "no healthy endpoints", one_books, stop_workload("books-1"),
             "books", expect("TUL1001", BOOKS)),
    Scenario("app-crashed", "no healthy endpoints", one_books, kill_app("books-1"),
             "books", expect("TUL1001", BOOKS)),
    # No Service resource: with its only instance gone, books leaves the mesh and callers'
    # sidecars answer 404 (unknown host) instead of 503.
    # A new client calls a path books' route does not match: its sidecar answers 404 (NR).
    Scenario("no-route", "no route", _search_only, new_client_path("/browse"), "books",
             expect("TUL1012", ROUTE)),
    Scenario("undeclared-service-gone", "no healthy endpoints", _undeclared_books,
             stop_workload("books-1"), "books", expect("TUL1001", BOOKS)),
    Scenario("port-mistake", "app not listening", one_books, start_bad(port_mistake=True),
             "bad", expect("TUL1002", proxy("bad-1"))),
    Scenario("app-never-listens", "app not listening", one_books,
             start_bad(flags=("--never-listen",)), "bad", expect("TUL1002", proxy("bad-1"))),
    # -- resilience: limits, ejection, retries, timeouts ---------------------------------------
    Scenario("circuit-breaker", "circuit breaker",
             _slow_books,
             apply(policy("books-pool", POOL)), "books",
             expect("TUL1005", "trafficpolicy/books-pool.default")),
    Scenario("outlier-ejection", "outlier ejection",
             _three_books_with_outliers,
             control("books-2", fail_pct=100, fail_code=500), "books",
             expect("TUL1006", proxy("books-2"))),
    Scenario("retries-exhausted", "retries exhausted",
             with_route("retry: {attempts: 2, codes: [503], backoff: 10ms}"),
             control("books-1", fail_pct=100), "books", expect("TUL1007", ROUTE, RULE0)),
    Scenario("route-timeout", "timeouts", with_route("timeouts: {request: 300ms}"),
             control("books-1", delay=1000), "books", expect("TUL1009", BOOKS, RULE0)),
    Scenario("rate-limited", "rate limit 429", one_books,
             apply(policy("books-limit", "rateLimit: {requests: 5, interval: 1s}")), "books",
             expect("TUL1010", "trafficpolicy/books-limit.default")),
    Scenario("route-rate-limited", "rate limit 429", with_route(""),
             apply(policy("books-route-limit", "rateLimit: {requests: 5, interval: 1s}",
                          ROUTE_TO_HTTPROUTE)), "books",
             expect("TUL1011", "trafficpolicy/books-route-limit.default")),
    Scenario("service-errors", "application errors", one_books,
             control("books-1", fail_pct=100, fail_code=500), "books",
             expect("TUL1013", BOOKS)),
    Scenario("plaintext-to-strict", "certificates and mTLS", one_books, plaintext_client,
             "books", expect("TUL1055", BOOKS)),
    Scenario("sidecar-restarting", "sidecar restarting", two_books,
             crash_envoy_repeatedly("books-2"), "books", expect("TUL1018", proxy("books-2"))),
    Scenario("controlplane-killed", "control plane", two_books, kill_controlplane, "books",
             expect("TUL1016", CP)),
    Scenario("instance-errors", "application errors", two_books,
             control("books-2", fail_pct=30, fail_code=500), "books",
             expect("TUL1013", proxy("books-2"))),
    Scenario("change-preceded-errors", "change blamed", _canary_service,
             apply(route(backends="[{name: books-canary}]")), "books",
             expect("TUL1065", ROUTE, RULE0)),
    # -- masked failures, versions compared ---------------------------------------------------
    Scenario("masked-instance", "masked failures",
             _two_books_with_retries,
             control("books-2", fail_pct=30), "books", expect("TUL1019", proxy("books-2"))),
    Scenario("masked-canary", "masked failures", v1_only,
             deploy_canary(("--fail-pct", "30"), retry=True), "books",
             expect("TUL1019", "service/books-v2.default")),
    Scenario("canary-slow", "versions compared", v1_only,
             deploy_canary(("--delay-ms", "400")), "books",
             expect("TUL1020", "service/books-v2.default")),
    Scenario("canary-errors", "versions compared", v1_only,
             deploy_canary(("--fail-pct", "20", "--fail-code", "500")), "books",
             expect("TUL1020", "service/books-v2.default")),
    # -- latency ------------------------------------------------------------------------------
    # 800 ms, not 300: under load the baseline's p99 is its cold first requests (100-300
    # ms); a 300 ms regression is then not twice it, and the rule rightly stays quiet.
    Scenario("latency-regression", "latency", two_books,
             control_all(("books-1", "books-2"), delay=800), "books",
             expect("TUL1021", BOOKS), baseline=120, naming_s=75.0),
    Scenario("slow-instance", "latency", three_books, control("books-3", delay=800), "books",
             expect("TUL1022", proxy("books-3"))),
    Scenario("near-timeout", "latency", with_route("timeouts: {request: 1s}", instances=2),
             control_all(("books-1", "books-2"), delay=800), "books",
             expect("TUL1023", RULE0), baseline=80),
    Scenario("requests-hang", "latency",
             with_route("timeouts: {request: 2s}", instances=2),
             control("books-2", hang=1), "books", expect("TUL1024", proxy("books-2"))),
    # -- the mesh's own doing -----------------------------------------------------------------
    Scenario("fault-abort-left-on", "fault injection", two_books,
             apply(policy("books-chaos", CHAOS_ABORT)), "books",
             expect("TUL1025", "trafficpolicy/books-chaos.default")),
    Scenario("fault-delay-left-on", "fault injection", two_books,
             apply(policy("books-chaos", CHAOS_DELAY)), "books",
             expect("TUL1025", "trafficpolicy/books-chaos.default")),
    Scenario("fault-on-route", "fault injection", with_route(""),
             apply(policy("books-route-chaos", CHAOS_ROUTE, ROUTE_TO_HTTPROUTE)), "books",
             expect("TUL1025", "trafficpolicy/books-route-chaos.default")),
    # -- 404s after a route change ------------------------------------------------------------
    Scenario("rewrite-404", "client errors after a change", _prefixed_books,
             apply(route(REWRITE)), "books", expect("TUL1026", ROUTE, RULE0), baseline=100),
    Scenario("moved-backend-404", "client errors after a change", _legacy_backend,
             apply(route(backends="[{name: books-legacy}]")), "books",
             expect("TUL1026", ROUTE, RULE0), baseline=100),
    # -- routing to nothing -------------------------------------------------------------------
    Scenario("canary-scaled-to-zero", "routing to nothing", _two_versions,
             stop_workload("books-2"), "books", expect("TUL1027", RULE0)),
    Scenario("route-to-missing-version", "routing to nothing",
             v1_only, _to_missing_version, "books",
             expect("TUL1027", RULE0)),
    # -- frozen processes ---------------------------------------------------------------------
    Scenario("app-frozen-one-of-two", "frozen app", two_books, freeze_app("books-2"),
             "books", expect("TUL1036", proxy("books-2"))),
    Scenario("app-frozen-only-instance", "frozen app", one_books, freeze_app("books-1"),
             "books", expect("TUL1036", proxy("books-1"))),
    Scenario("envoy-frozen", "frozen Envoy", two_books, freeze_envoy("books-2"), "books",
             expect("TUL1037", proxy("books-2"))),
    Scenario("caller-envoy-frozen", "frozen Envoy", two_books, freeze_envoy("client-1"),
             "client", expect("TUL1037", proxy("client-1"))),
    Scenario("agent-frozen", "frozen agent", two_books, freeze_agent("books-2"), "books",
             expect("TUL1038", proxy("books-2"))),
    Scenario("controlplane-frozen", "frozen control plane", two_books, freeze_controlplane,
             "books", expect("TUL1090", CP)),
)

HEALTHY: tuple[Scenario, ...] = (
    Scenario("steady-load", "healthy", two_books, None, "books", None),
    Scenario("normal-404s-and-401s", "healthy", _healthy_404s, None, "books", None),
    Scenario("healthy-canary", "healthy", v1_only, _healthy_canary, "books", None),
    Scenario("canary-weights-shift", "healthy", _two_versions, _weights_shift, "books", None),
    Scenario("scale-up", "healthy", two_books, scale_up, "books", None),
    Scenario("rolling-restart", "healthy", two_books, rolling_restart, "books", None),
)

CATALOGUE: tuple[Scenario, ...] = FAULTS + HEALTHY
