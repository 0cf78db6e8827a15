"""AuthorizationPolicies on ExternalServices: resolved per caller (egress_authz.py), and the
RBAC policies of the caller's egress filter (rbac.egress_rbac_filter)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as http_rbac_pb2
from google.protobuf import text_format

from tests.unit.model.documents import assert_problems, parse, problems
from tests.unit.model.workloads import workload
from tulle.model.egress_authz import EgressAuthz, egress_authz_for, policy_hosts
from tulle.model.mesh import MeshIdentity, MeshSnapshot, build_mesh
from tulle.model.references import reference_problems
from tulle.xds.generators import rbac

TD = "tulle.local"
WEB = f"spiffe://{TD}/ns/default/sa/web"
OPS = f"spiffe://{TD}/ns/ops/sa/ops"
HOST = "api.example.com"


def doc(kind: str, name: str, spec: dict[str, Any], namespace: str = "default") -> str:
    api = "tulle.io/v1alpha1"
    return yaml.safe_dump({"apiVersion": api, "kind": kind,
                           "metadata": {"name": name, "namespace": namespace}, "spec": spec})


API = doc("ExternalService", "api", {"host": HOST, "ports": [{"port": 443, "protocol": "tls"},
                                                               {"port": 80}]})


def policy(action: str, *rules: dict[str, Any], name: str = "p", mode: str = "Enforce") -> str:
    return doc("AuthorizationPolicy", name, {
        "targetRef": {"kind": "ExternalService", "name": "api"}, "action": action,
        "rules": list(rules), "mode": mode})


def snapshot(*texts: str) -> MeshSnapshot:
    resources = [r for text in texts for r in parse(text)]
    identity = MeshIdentity(TD, "", {})
    return build_mesh(1, resources, [workload("web-1", "web"),
                                     workload("ops-1", "ops", namespace="ops")], identity)


def for_caller(mesh: MeshSnapshot, identity: str, namespace: str) -> EgressAuthz | None:
    return egress_authz_for(mesh.externals, mesh.external_authz, identity, namespace)


def test_no_policy_no_filter() -> None:
    assert for_caller(snapshot(API), WEB, "default") is None


def test_a_deny_rule_applies_to_the_callers_it_names_only() -> None:
    mesh = snapshot(API, policy("DENY", {"name": "no-ops", "from": [{"namespace": "ops"}]}))
    assert for_caller(mesh, WEB, "default") is None
    found = for_caller(mesh, OPS, "ops")
    assert found is not None
    (guard,) = found.guards
    assert (guard.host, guard.http_port) == (HOST, 80)
    assert guard.deny == (("AuthorizationPolicy:default/p:no-ops", ()),)


def test_an_allow_policy_denies_callers_it_does_not_name_everything() -> None:
    mesh = snapshot(API, policy("ALLOW", {"from": [{"service": "web"}],
                                          "to": [{"methods": ["GET"]}]}))
    web, ops = for_caller(mesh, WEB, "default"), for_caller(mesh, OPS, "ops")
    assert web is not None and ops is not None
    assert web.guards[0].allow_id == ops.guards[0].allow_id == "no-ALLOW-rule-matched:default/p"
    assert [len(ops_) for ops_ in web.guards[0].allowed] == [1]
    assert ops.guards[0].allowed == ()  # nothing allowed: every request to the host denied
    # Without a mesh identity (no CA) a caller is none of the named ones.
    anonymous = for_caller(mesh, "", "default")
    assert anonymous is not None and anonymous.guards[0].allowed == ()


def test_a_dry_run_policy_is_a_shadow_only() -> None:
    mesh = snapshot(API, policy("DENY", {}, mode="DryRun"))
    found = for_caller(mesh, WEB, "default")
    assert found is not None and found.guards == ()
    assert found.dry_run is not None and found.dry_run[0].deny[0][0] == \
        "AuthorizationPolicy:default/p:0"


def test_the_filter_names_host_port_and_method() -> None:
    mesh = snapshot(API, policy("DENY", {"name": "tls", "to": [{"ports": [443]}]},
                                {"name": "plain-post", "to": [{"ports": [80],
                                                                "methods": ["POST"]}]}))
    found = for_caller(mesh, WEB, "default")
    assert found is not None
    config = rbac.egress_rbac_filter(found)
    assert config.name == rbac.EGRESS_RBAC
    rules = http_rbac_pb2.RBAC()
    assert config.typed_config.Unpack(rules)
    assert rules.rules_stat_prefix == "egress_" and rules.track_per_rule_stats
    policies = {name: text_format.MessageToString(p) for name, p in rules.rules.policies.items()}
    assert set(policies) == {"AuthorizationPolicy:default/p:tls",
                             "AuthorizationPolicy:default/p:plain-post"}
    tls, post = (policies[f"AuthorizationPolicy:default/p:{n}"] for n in ("tls", "plain-post"))
    for text in (tls, post):
        assert 'regex: "api\\\\.example\\\\.com(:.*)?"' in text, text
    assert 'exact: "api.example.com:443"' in tls and "CONNECT" not in tls
    # Port 80 is the http port: a CONNECT to it, or any plain request (to whatever port).
    assert 'exact: "api.example.com:80"' in post and 'exact: "CONNECT"' in post
    assert 'exact: "POST"' in post


def test_namespace_and_mesh_policies_do_not_cover_external_services() -> None:
    mesh = snapshot(API, doc("AuthorizationPolicy", "closed", {
        "targetRef": {"kind": "Namespace"}, "defaultAction": "DENY"}))
    assert mesh.external_authz == {}


@pytest.mark.parametrize(("text", "field", "message"), [
    (doc("AuthorizationPolicy", "p", {"targetRef": {"kind": "ExternalService"},
                                      "action": "DENY", "rules": [{}]}),
     "spec.targetRef.name", "an ExternalService target needs its name"),
    (doc("AuthorizationPolicy", "p", {"targetRef": {"kind": "ExternalService", "name": "api"},
                                      "defaultAction": "DENY"}),
     "spec.defaultAction", "a default applies to a Namespace or the Mesh"),
])
def test_refused(text: str, field: str, message: str) -> None:
    assert_problems(problems(text), [(field, message, "")] if field != "spec.defaultAction"
                    else [(field, message, "kind: Namespace")])


def test_the_target_must_be_an_external_service_of_the_policys_namespace() -> None:
    (found,) = parse(policy("DENY", {}))
    problems_ = reference_problems([found], frozenset(), {}, {found.key: found})
    assert [(p.field, p.message) for p in problems_] == [
        ("spec.targetRef.name", 'unknown ExternalService "api" in namespace "default"')]
    external = parse(API)[0]
    assert reference_problems([found], frozenset(), {},
                              {found.key: found, external.key: external}) == []


def test_each_rbac_policy_id_names_the_host_it_guards() -> None:
    mesh = snapshot(API, policy("ALLOW", {"from": [{"service": "web"}]}, name="only-web"),
                    policy("DENY", {"name": "x"}, name="trial", mode="DryRun"))
    assert policy_hosts(mesh.external_authz) == {
        "no-ALLOW-rule-matched:default/only-web": HOST,
        "AuthorizationPolicy:default/trial:x": HOST}
