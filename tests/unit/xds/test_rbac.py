"""AuthorizationPolicy rules to RBAC (generators/rbac.py): which policies each listener
carries, and how callers and requests become principals. Envoy's answers to real requests are
checked in tests/e2e/test_authorization.py."""

from __future__ import annotations

from envoy.config.rbac.v3 import rbac_pb2
from envoy.type.matcher.v3 import string_pb2

from tulle.model.authorization import Callers, ResolvedRule, ServiceAuthz
from tulle.model.authz import Operation
from tulle.model.httproute import PathMatch
from tulle.xds.generators import rbac

TD = "tulle.local"
WEB = f"spiffe://{TD}/ns/default/sa/web"
ADMIN = Operation(paths=(PathMatch("PathPrefix", "/admin/"),), methods=("DELETE",),
                  ports=(8080,))


def rule(policy: str, name: str, callers: tuple[Callers, ...] = (),
         operations: tuple[Operation, ...] = ()) -> ResolvedRule:
    return ResolvedRule(policy, name, callers, operations)


def rules(authz: ServiceAuthz, port: int = 8080, http: bool = True) -> rbac_pb2.RBAC:
    return rbac._rules(authz, port, http)


def test_every_decision_is_a_named_deny_policy() -> None:
    authz = ServiceAuthz(TD, deny=(rule("default/no-admin", "admin", operations=(ADMIN,)),),
                         allow=(rule("default/readers", "0", (Callers((WEB,)),)),
                                rule("default/ops", "0", (Callers(namespace="ops"),))))
    found = rules(authz)
    assert found.action == rbac_pb2.RBAC.DENY
    # Envoy tries policies in the order of their IDs: explicit denies first.
    assert sorted(found.policies) == ["AuthorizationPolicy:default/no-admin:admin",
                                      "no-ALLOW-rule-matched:default/ops,default/readers"]
    unmatched = found.policies["no-ALLOW-rule-matched:default/ops,default/readers"]
    callers = unmatched.principals[0].not_id.or_ids.ids
    # An identity, on HTTP: the end of the x-forwarded-client-cert the connection manager set
    # from the verified certificate (one header read, not one certificate read per identity).
    assert callers[0].header.name == "x-forwarded-client-cert"
    assert callers[0].header.string_match.suffix == f";URI={WEB}"
    assert callers[1].authenticated.principal_name.safe_regex.regex == \
        r"spiffe://tulle\.local/ns/ops/sa/[a-z0-9-]+"
    # On a tcp service's connections there are no headers: the certificate itself.
    tcp = rules(authz, http=False).policies["no-ALLOW-rule-matched:default/ops,default/readers"]
    assert tcp.principals[0].not_id.or_ids.ids[0].authenticated.principal_name.exact == WEB


def test_a_path_prefix_matches_whole_segments_and_methods_any_of() -> None:
    principal = rbac._operation(ADMIN)
    path, method = principal.and_ids.ids
    assert [p.url_path.path for p in path.or_ids.ids] == [
        string_pb2.StringMatcher(exact="/admin"), string_pb2.StringMatcher(prefix="/admin/")]
    assert method.header.name == ":method" and method.header.string_match.exact == "DELETE"


def test_an_operation_for_another_port_never_matches_here() -> None:
    authz = ServiceAuthz(TD, deny=(rule("default/no-admin", "admin", operations=(ADMIN,)),))
    assert list(rules(authz, port=8080).policies) == ["AuthorizationPolicy:default/no-admin:admin"]
    assert list(rules(authz, port=9090).policies) == []
    # An ALLOW policy whose rules cannot match on this port still denies what it does not allow.
    allow = ServiceAuthz(TD, allow=(rule("default/readers", "0", operations=(ADMIN,)),))
    assert rules(allow, port=9090).policies["no-ALLOW-rule-matched:default/readers"] \
        .principals[0].any


def test_tcp_denies_fail_closed_and_allows_that_need_requests_allow_nothing() -> None:
    http_only = Operation(methods=("GET",))
    deny = ServiceAuthz(TD, deny=(rule("default/d", "0", (Callers((WEB,)),), (http_only,)),))
    principal = rules(deny, http=False).policies["AuthorizationPolicy:default/d:0"].principals[0]
    # The caller alone decides: the method cannot be seen on a connection (and the request's
    # side is tested first, as it is cheaper).
    assert principal.and_ids.ids[0].any
    assert principal.and_ids.ids[1].authenticated.principal_name.exact == WEB
    allow = ServiceAuthz(TD, allow=(rule("default/a", "0", (Callers((WEB,)),), (http_only,)),))
    assert rules(allow, http=False).policies["no-ALLOW-rule-matched:default/a"].principals[0].any


def test_a_default_deny_denies_everything_when_no_allow_applies() -> None:
    found = rules(ServiceAuthz(TD, default_deny="tulle-system/closed"))
    assert list(found.policies) == ["default-deny:tulle-system/closed"]
    assert found.policies["default-deny:tulle-system/closed"].principals[0].any


def test_a_caller_service_without_identities_matches_nobody() -> None:
    principal = rbac._caller(Callers(identities=()), "")
    assert principal.not_id.any


def test_the_403_names_the_policy_unless_the_mesh_says_not_to() -> None:
    closed = ServiceAuthz(TD, default_deny="tulle-system/closed")
    body = rbac.denied_reply(closed).body_format_override.text_format_source.inline_string
    assert "%RESPONSE_CODE_DETAILS%" in body
    quiet = ServiceAuthz(TD, default_deny="tulle-system/closed", reveal=False)
    assert rbac.denied_reply(quiet).body_format_override.text_format_source.inline_string == \
        "access denied\n"
    assert rbac.http_rbac_filter(closed, 8080).name == rbac.HTTP_RBAC
    assert rbac.network_rbac_filter(closed, 8080, "inbound").name == rbac.NETWORK_RBAC
