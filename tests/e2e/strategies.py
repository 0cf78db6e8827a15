"""Hypothesis strategies for valid HTTPRoutes and TrafficPolicies, as manifests.

"Valid" means within the documented rules of docs/resources.md. The property under test is
that tulle accepts every such resource and that Envoy accepts whatever tulle accepted.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

SERVICES = ("books", "authors", "books-v2")

segment = st.from_regex(r"[a-z0-9][a-z0-9-]{0,7}", fullmatch=True)
host_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,6}[a-z0-9])?", fullmatch=True)
path = st.lists(segment, min_size=1, max_size=3).map(lambda parts: "/" + "/".join(parts))
header_name = st.from_regex(r"x-[a-z0-9]{1,10}(-[a-z0-9]{1,6})?", fullmatch=True)
header_value = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E),
                       min_size=0, max_size=20).map(str.strip)
simple_regex = st.sampled_from([".*", "[a-z]+", "v[0-9]+", "(alpha|beta)", "[^/]+", "\\d{1,3}",
                                "(?i)abc", "[[:alpha:]]+", "x{2,5}y?", "\\w+\\.json"])
duration = st.tuples(st.integers(1, 5000), st.sampled_from(["ms", "s"])).map(
    lambda t: f"{t[0]}{t[1]}")
refill = st.one_of(st.integers(50, 5000).map(lambda ms: f"{ms}ms"),
                   st.integers(1, 60).map(lambda s: f"{s}s"))  # buckets refill every 50ms+


def _path_match(kind: str) -> st.SearchStrategy[dict[str, Any]]:
    if kind == "RegularExpression":
        return st.tuples(path, simple_regex).map(
            lambda t: {"type": kind, "value": f"{t[0]}/{t[1]}"})
    return path.map(lambda value: {"type": kind, "value": value})


@st.composite
def match(draw: st.DrawFn, path_kinds: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {"path": draw(st.sampled_from(path_kinds).flatmap(_path_match))}
    headers = draw(st.lists(header_name, max_size=2, unique=True))
    if headers:
        out["headers"] = [
            {"name": name, "type": "RegularExpression", "value": draw(simple_regex)}
            if draw(st.booleans()) else {"name": name, "value": draw(header_value)}
            for name in headers]
    params = draw(st.lists(segment, max_size=2, unique=True))
    if params:
        out["queryParams"] = [{"name": name, "value": draw(segment)} for name in params]
    if draw(st.booleans()):
        out["method"] = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]))
    return out


@st.composite
def header_modifier(draw: st.DrawFn) -> dict[str, Any]:
    names = draw(st.lists(header_name, min_size=1, max_size=4, unique=True))
    modifier: dict[str, Any] = {}
    for name in names:
        action = draw(st.sampled_from(["set", "add", "remove"]))
        if action == "remove":
            modifier.setdefault("remove", []).append(name)
        else:
            modifier.setdefault(action, []).append({"name": name, "value": draw(header_value)})
    return modifier


@st.composite
def redirect_filter(draw: st.DrawFn) -> dict[str, Any]:
    spec: dict[str, Any] = {"statusCode": draw(st.sampled_from([301, 302, 303, 307, 308]))}
    if draw(st.booleans()):
        spec["hostname"] = draw(host_label) + ".example.com"
    if draw(st.booleans()):
        spec["scheme"] = draw(st.sampled_from(["http", "https"]))
    if draw(st.booleans()):
        spec["port"] = draw(st.integers(1, 65535))
    if draw(st.booleans()):
        spec["path"] = {"type": "ReplaceFullPath", "replaceFullPath": draw(path)}
    return {"type": "RequestRedirect", "requestRedirect": spec}


@st.composite
def mirror_filter(draw: st.DrawFn) -> dict[str, Any]:
    mirror: dict[str, Any] = {"backendRef": {"name": draw(st.sampled_from(SERVICES))}}
    share = draw(st.sampled_from(["none", "percent", "fraction"]))
    if share == "percent":
        mirror["percent"] = draw(st.integers(0, 100))
    elif share == "fraction":
        denominator = draw(st.integers(1, 1_000_000))
        mirror["fraction"] = {"numerator": draw(st.integers(0, denominator)),
                              "denominator": denominator}
    return {"type": "RequestMirror", "requestMirror": mirror}


@st.composite
def rewrite_filter(draw: st.DrawFn, prefix_only: bool) -> dict[str, Any] | None:
    rewrite: dict[str, Any] = {}
    if draw(st.booleans()):
        rewrite["hostname"] = draw(host_label) + ".internal"
    if prefix_only and draw(st.booleans()):
        rewrite["path"] = {"type": "ReplacePrefixMatch",
                           "replacePrefixMatch": draw(st.sampled_from(["/", "/v2"]))}
    elif draw(st.booleans()):
        rewrite["path"] = {"type": "ReplaceFullPath", "replaceFullPath": draw(path)}
    return {"type": "URLRewrite", "urlRewrite": rewrite} if rewrite else None


@st.composite
def resilience(draw: st.DrawFn) -> dict[str, Any]:
    out: dict[str, Any] = {}
    timeouts = draw(st.lists(st.integers(1, 30), min_size=0, max_size=2))
    if timeouts:
        out["timeouts"] = {"request": f"{max(timeouts)}s"}
        if len(timeouts) == 2:
            out["timeouts"]["backendRequest"] = f"{min(timeouts)}s"
    if draw(st.booleans()):
        out["retry"] = {"attempts": draw(st.integers(0, 5)),
                        "codes": draw(st.lists(st.sampled_from([500, 502, 503, 504]),
                                               unique=True, max_size=3))}
        if draw(st.booleans()):
            out["retry"]["backoff"] = draw(duration)
    return out


@st.composite
def rule(draw: st.DrawFn, index: int) -> dict[str, Any]:
    prefix_only = draw(st.booleans())
    kinds = ("PathPrefix",) if prefix_only else ("Exact", "PathPrefix", "RegularExpression")
    out: dict[str, Any] = {"matches": draw(st.lists(match(kinds), min_size=1, max_size=3))}
    if draw(st.booleans()):
        out["name"] = f"rule-{index}"
    filters: list[dict[str, Any]] = []
    if draw(st.integers(0, 9)) == 0:
        filters.append(draw(redirect_filter()))
    else:
        weights = draw(st.lists(st.integers(0, 1000), min_size=1, max_size=3))
        if not any(weights):
            weights[0] = 1
        out["backendRefs"] = [{"name": draw(st.sampled_from(SERVICES)), "weight": w}
                              for w in weights]
        if draw(st.booleans()):
            filters.append(draw(mirror_filter()))
        if draw(st.booleans()) and (rewrite := draw(rewrite_filter(prefix_only))) is not None:
            filters.append(rewrite)
        out.update(draw(resilience()))
    for kind, key in (("RequestHeaderModifier", "requestHeaderModifier"),
                      ("ResponseHeaderModifier", "responseHeaderModifier")):
        if draw(st.booleans()):
            filters.append({"type": kind, key: draw(header_modifier())})
    if filters:
        out["filters"] = filters
    return out


@st.composite
def http_route(draw: st.DrawFn) -> dict[str, Any]:
    count = draw(st.integers(1, 4))
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "prop", "namespace": "default"},
            "spec": {"parentRefs": [{"name": "books"}],
                     "rules": [draw(rule(i)) for i in range(count)],
                     # DryRun: the route in force stays, and callers log to a trial.
                     "mode": draw(st.sampled_from(["Enforce", "DryRun"]))}}


@st.composite
def traffic_policy(draw: st.DrawFn) -> dict[str, Any]:
    spec: dict[str, Any] = {"targetRefs": [{"kind": "Service", "name": "books"}]}
    options = {
        "connectionPool": st.fixed_dictionaries({}, optional={
            "maxConnections": st.integers(1, 10000), "maxPendingRequests": st.integers(1, 10000),
            "maxRequests": st.integers(1, 10000)}),
        "retryBudget": st.fixed_dictionaries({"percent": st.floats(0, 100),
                                              "minRetryConcurrency": st.integers(0, 100)}),
        "outlierDetection": st.fixed_dictionaries({
            "consecutive5xx": st.integers(1, 100), "interval": duration,
            "baseEjectionTime": duration, "maxEjectionPercent": st.integers(0, 100)},
            optional={"consecutiveGatewayErrors": st.integers(1, 100)}),
        "loadBalancer": st.one_of(
            st.fixed_dictionaries({"algorithm": st.sampled_from(
                ["RoundRobin", "LeastRequest", "Random"])}),
            st.fixed_dictionaries({"algorithm": st.just("RingHash"), "hashKey": st.one_of(
                st.fixed_dictionaries({"header": header_name}),
                st.fixed_dictionaries({"cookie": segment}),
                st.just({"sourceIP": True}))})),
        "rateLimit": st.integers(1, 100000).flatmap(lambda requests: st.fixed_dictionaries(
            {"requests": st.just(requests)},
            optional={"interval": refill, "burst": st.integers(requests, 1_000_000)})),
        "faultInjection": st.fixed_dictionaries({}, optional={
            "delay": st.fixed_dictionaries({"fixedDelay": duration,
                                            "percent": st.integers(0, 100)}),
            "abort": st.fixed_dictionaries({"httpStatus": st.integers(200, 599),
                                            "percent": st.integers(0, 100)}),
        }).filter(bool),
        "timeouts": st.fixed_dictionaries({}, optional={"connect": duration, "idle": duration}),
    }
    chosen = draw(st.lists(st.sampled_from(sorted(options)), min_size=1, unique=True))
    for key in chosen:
        spec[key] = draw(options[key])
    return {"apiVersion": "tulle.io/v1alpha1", "kind": "TrafficPolicy",
            "metadata": {"name": "prop", "namespace": "default"}, "spec": spec}


METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")


@st.composite
def caller(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["identity", "service", "namespace"]))
    if kind == "identity":
        return {"identity": f"spiffe://tulle.local/ns/{draw(host_label)}/sa/{draw(host_label)}"}
    if kind == "service":
        name = draw(host_label)
        return {"service": f"{draw(host_label)}/{name}" if draw(st.booleans()) else name}
    return {"namespace": draw(host_label)}


@st.composite
def operation(draw: st.DrawFn) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if draw(st.booleans()):
        kinds = ("Exact", "PathPrefix", "RegularExpression")
        out["paths"] = draw(st.lists(st.sampled_from(kinds).flatmap(_path_match), min_size=1,
                                     max_size=3))
    if draw(st.booleans()):
        out["methods"] = draw(st.lists(st.sampled_from(METHODS), min_size=1, max_size=3,
                                       unique=True))
    if draw(st.booleans()):
        out["headers"] = [
            {"name": name, "type": "RegularExpression", "value": draw(simple_regex)}
            if draw(st.booleans()) else {"name": name, "value": draw(header_value)}
            for name in draw(st.lists(header_name, min_size=1, max_size=2, unique=True))]
    if draw(st.booleans()):
        out["ports"] = draw(st.lists(st.integers(1, 65535), min_size=1, max_size=3,
                                     unique=True))
    return out


@st.composite
def authorization_policy(draw: st.DrawFn) -> dict[str, Any]:
    """Rules on books, or a default for the namespace or the mesh; enforced or dry run."""
    if draw(st.integers(0, 4)) == 0:
        spec: dict[str, Any] = {
            "targetRef": {"kind": draw(st.sampled_from(["Namespace", "Mesh"]))},
            "defaultAction": draw(st.sampled_from(["ALLOW", "DENY"]))}
    else:
        rules = []
        for index in range(draw(st.integers(1, 3))):
            item: dict[str, Any] = {}
            if draw(st.booleans()):
                item["name"] = f"r{index}"
            if draw(st.booleans()):
                item["from"] = draw(st.lists(caller(), min_size=1, max_size=3))
            if draw(st.booleans()):
                item["to"] = draw(st.lists(operation(), min_size=1, max_size=2))
            rules.append(item)
        spec = {"targetRef": {"kind": "Service", "name": "books"},
                "action": draw(st.sampled_from(["ALLOW", "DENY"])), "rules": rules}
    if draw(st.booleans()):
        spec["mode"] = "DryRun"
    return {"apiVersion": "tulle.io/v1alpha1", "kind": "AuthorizationPolicy",
            "metadata": {"name": "prop", "namespace": "default"}, "spec": spec}


_LABEL = st.from_regex(r"\A[a-z][a-z0-9-]{0,8}[a-z0-9]\Z")


@st.composite
def external_service(draw: st.DrawFn, ca_pem: str) -> dict[str, Any]:
    """One host outside the mesh: ports of each protocol (one http at most), an address or
    none, TLS origination or none; and the Mesh's outbound mode."""
    host = ".".join(draw(st.lists(_LABEL, min_size=2, max_size=4)))
    numbers = draw(st.lists(st.integers(1, 65535), min_size=1, max_size=3, unique=True))
    protocols = draw(st.lists(st.sampled_from(["tls", "tcp"]), min_size=len(numbers),
                              max_size=len(numbers)))
    if draw(st.booleans()):
        protocols[0] = "http"
    spec: dict[str, Any] = {"host": host, "ports": [
        {"port": n, "protocol": p} for n, p in zip(numbers, protocols, strict=True)]}
    address = draw(st.sampled_from([None, "127.0.0.1", "10.1.2.3", "db.internal.example"]))
    if address is not None:
        spec["address"] = address
    if "http" in protocols and draw(st.booleans()):
        spec["tls"] = {"caBundle": ca_pem}
        if draw(st.booleans()):
            spec["tls"]["sni"] = draw(st.sampled_from([host, "sni.example.com", "10.0.0.1"]))
    return {"apiVersion": "tulle.io/v1alpha1", "kind": "ExternalService",
            "metadata": {"name": "prop-external", "namespace": "default"}, "spec": spec}


def outbound_mode() -> st.SearchStrategy[dict[str, Any]]:
    return st.sampled_from(["REGISTRY_ONLY", "ALLOW_ANY"]).map(lambda mode: {
        "apiVersion": "tulle.io/v1alpha1", "kind": "Mesh", "metadata": {"name": "default"},
        "spec": {"outbound": {"mode": mode}}})
