"""whatif.evaluate: one call's steps and outcome, across hosts, routes and policies."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.xds.meshes import Manifest, http_route, rule, workload
from tulle.errors import NotFoundError, UsageError
from tulle.model.mesh import MeshIdentity, MeshSnapshot, build_mesh
from tulle.model.parse import resource_from_manifest
from tulle.whatif.evaluate import resolve_caller, what_if

TD = "tulle.local"


def snapshot(*manifests: Manifest) -> MeshSnapshot:
    return build_mesh(1, [resource_from_manifest(m) for m in manifests],
                      [workload("web-1"), workload("books-1"),
                       workload("books-v2-1", service="books-v2", address="10.0.0.2")],
                      MeshIdentity(TD, "", {}))


def ask(snap: MeshSnapshot, url: str, method: str = "GET",
        headers: tuple[tuple[str, str], ...] = ()) -> dict[str, Any]:
    return what_if(snap, resolve_caller(snap, "web", "default"), url, method, headers).to_dict()


def steps(result: dict[str, Any]) -> dict[str, str]:
    return {s["step"]: s["result"] for s in result["steps"]}


def policy(spec: dict[str, Any], name: str = "p", kind: str = "AuthorizationPolicy"
           ) -> Manifest:
    return {"apiVersion": "tulle.io/v1alpha1", "kind": kind,
            "metadata": {"name": name, "namespace": "default"}, "spec": spec}


def test_the_default_route_to_a_ready_service() -> None:
    result = ask(snapshot(), "http://books/list")
    assert steps(result)["route"] == "the default route (no HTTPRoute is attached)"
    assert result["outcome"] == "sent to books.default over mutual TLS"
    assert result["caller"] == "web-1.default"


def test_a_canary_split_and_the_rule_that_decides() -> None:
    split = http_route("canary", "books", [rule(("books", 90), ("books-v2", 10),
                                                prefix="/list")])
    result = ask(snapshot(split), "http://books/list/1")
    assert steps(result)["route"] == "rule rule0 of HTTPRoute default/canary"
    backends = next(s for s in result["steps"] if s["step"] == "backends")
    assert backends["details"] == [
        "books.default: weight 90 (90 %), 1 ready instance",
        "books-v2.default: weight 10 (10 %), 1 ready instance"]
    missed = ask(snapshot(split), "http://books/other")
    assert missed["outcome"].startswith("404 from the caller's sidecar")
    assert "PathPrefix /list" in next(s for s in missed["steps"]
                                      if s["step"] == "route")["details"][0]


def test_authorization_with_a_dry_run() -> None:
    only_ops = policy({"targetRef": {"kind": "Service", "name": "books"}, "action": "ALLOW",
                       "rules": [{"from": [{"namespace": "ops"}]}]})
    result = ask(snapshot(only_ops), "http://books/")
    assert result["outcome"] == "403 from the callee's sidecar: no-ALLOW-rule-matched:default/p"
    dry = policy({"targetRef": {"kind": "Service", "name": "books"}, "action": "DENY",
                  "rules": [{"name": "deletes", "to": [{"methods": ["DELETE"]}]}],
                  "mode": "DryRun"})
    result = ask(snapshot(dry), "http://books/x", "DELETE")
    auth = next(s for s in result["steps"] if s["step"] == "authorization")
    assert auth["result"] == "books.default: allowed"
    assert "dry run: would be denied by AuthorizationPolicy:default/p:deletes" in auth["details"]


@pytest.mark.parametrize(("mode", "outcome"), [
    ("REGISTRY_ONLY", "502 from the caller's sidecar: the host is not in the registry"),
    ("ALLOW_ANY", "sent to api.other.example:8443 directly, no policy applies"),
])
def test_a_host_outside_the_mesh(mode: str, outcome: str) -> None:
    mesh_doc = {"apiVersion": "tulle.io/v1alpha1", "kind": "Mesh",
                "metadata": {"name": "default"}, "spec": {"outbound": {"mode": mode}}}
    assert ask(snapshot(mesh_doc), "http://api.other.example:8443/")["outcome"] == outcome


def test_an_external_service_with_origination_and_egress_authorization() -> None:
    from tests.support.outside import server_cert

    external = {"apiVersion": "tulle.io/v1alpha1", "kind": "ExternalService",
                "metadata": {"name": "pay", "namespace": "default"},
                "spec": {"host": "pay.example.com", "ports": [{"port": 443}],
                         "tls": {"caBundle": server_cert("pay.example.com").ca_pem}}}
    result = ask(snapshot(external), "http://pay.example.com/charge")
    assert result["outcome"] == ("sent to pay.example.com:443 (outside the mesh) with TLS "
                                 "originated by the sidecar")
    deny = policy({"targetRef": {"kind": "ExternalService", "name": "pay"}, "action": "DENY",
                   "rules": [{"from": [{"service": "web"}]}]})
    assert ask(snapshot(external, deny), "http://pay.example.com/")["outcome"] == \
        "403 from the caller's sidecar: AuthorizationPolicy:default/p:0"


def test_filters_rewrite_and_redirect() -> None:
    rewrite = http_route("rw", "books", [{
        "matches": [{"path": {"type": "PathPrefix", "value": "/old"}}],
        "filters": [{"type": "URLRewrite", "urlRewrite": {"path": {
            "type": "ReplacePrefixMatch", "replacePrefixMatch": "/new"}}}],
        "backendRefs": [{"name": "books"}]}])
    result = ask(snapshot(rewrite), "http://books/old/1")
    filters = next(s for s in result["steps"] if s["step"] == "filters")
    assert "URLRewrite: path /old/1 becomes /new/1" in filters["details"]
    redirect = http_route("rd", "books", [{
        "filters": [{"type": "RequestRedirect", "requestRedirect": {
            "hostname": "example.com", "statusCode": 301}}]}])
    assert ask(snapshot(redirect), "http://books/x")["outcome"] == \
        "301 redirect from the caller's sidecar"


@pytest.mark.parametrize(("text", "error"), [
    ("nobody", NotFoundError), ("web/ghost-1", NotFoundError), ("Web", UsageError)])
def test_unknown_or_bad_callers(text: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        resolve_caller(snapshot(), text, "default")


def test_a_bad_url_is_refused() -> None:
    with pytest.raises(UsageError, match="is not an http:// URL"):
        ask(snapshot(), "ftp://books/")


def test_a_route_in_dry_run_is_a_step_of_its_own() -> None:
    from tulle.model.route_trials import staged

    enforced = resource_from_manifest(http_route("canary", "books", [rule("books")]))
    change = http_route("canary", "books", [rule(("books", 90), ("books-v2", 10))])
    change["spec"]["mode"] = "DryRun"
    tried = staged(resource_from_manifest(change), enforced)
    snap = build_mesh(1, [tried], [workload("web-1"), workload("books-1"),
                                   workload("books-v2-1", service="books-v2")],
                      MeshIdentity(TD, "", {}))
    result = ask(snap, "http://books/list")
    assert steps(result)["route in dry run"] == \
        "default/canary:0 -> books.default 90 %, books-v2.default 10 %"
    # Callers route by the version in force.
    assert steps(result)["route"] == "rule rule0 of HTTPRoute default/canary"
    assert result["outcome"] == "sent to books.default over mutual TLS"
