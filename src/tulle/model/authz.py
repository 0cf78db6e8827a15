"""AuthorizationPolicy: who may call whom, enforced by the callee's sidecar.

A policy targets the whole mesh, one namespace, or one service (``targetRef``) and either
holds rules with an action, or sets the default for its scope::

    spec:
      targetRef: {kind: Service, name: books}
      action: DENY                      # or ALLOW
      rules:
      - name: no-deletes
        from: [{namespace: shop}]       # any of these callers; omitted: any caller
        to: [{methods: [DELETE]}]       # any of these requests; omitted: any request

    spec:
      targetRef: {kind: Namespace}      # the policy's own namespace
      defaultAction: DENY               # what no rule decides; ALLOW unless set

How a request to a service is decided (every policy whose target covers the service):
1. a DENY rule matches: denied, by that rule;
2. an ALLOW rule matches: allowed;
3. ALLOW rules exist but none matched: denied (an ALLOW policy means "only these");
4. otherwise the default: the namespace's, else the mesh's, else ALLOW.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar, Literal

from annotated_types import Ge, Le, Len

from tulle.model.httproute import HeaderMatch, Method, PathMatch
from tulle.model.spec_config import SPEC_CONFIG

Action = Literal["ALLOW", "DENY"]


@dataclass(frozen=True)
class AuthzTargetRef:
    __pydantic_config__: ClassVar = SPEC_CONFIG

    kind: Literal["Mesh", "Namespace", "Service", "ExternalService"]
    # Service, ExternalService: its name (in the policy's namespace). Namespace: the policy's
    # own; a name, if given, must be that namespace. Mesh: none. Namespace and Mesh policies
    # cover mesh services only: an ExternalService is covered by the policies that name it.
    name: str | None = None
    group: Literal["", "core", "tulle.io"] = ""


@dataclass(frozen=True)
class Caller:
    """One kind of caller: exactly one field is set."""

    __pydantic_config__: ClassVar = SPEC_CONFIG

    # A workload identity, e.g. spiffe://tulle.local/ns/shop/sa/web.
    identity: Annotated[str, Len(1, 512)] | None = None
    # A service's instances: "web" (the policy's namespace) or "shop/web".
    service: Annotated[str, Len(1, 127)] | None = None
    # Every workload of a namespace.
    namespace: Annotated[str, Len(1, 63)] | None = None


@dataclass(frozen=True)
class Operation:
    """What a request must be: every field that is set must match (each field: any of its
    values). TCP services can check only ``ports``."""

    __pydantic_config__: ClassVar = SPEC_CONFIG

    paths: Annotated[tuple[PathMatch, ...], Len(0, 16)] = ()
    methods: Annotated[tuple[Method, ...], Len(0, 9)] = ()
    headers: Annotated[tuple[HeaderMatch, ...], Len(0, 16)] = ()  # all of them
    # The service's port, as its workloads serve it (`tulle run --port`).
    ports: Annotated[tuple[Annotated[int, Ge(1), Le(65535)], ...], Len(0, 16)] = ()

    @property
    def http_only(self) -> bool:
        return bool(self.paths or self.methods or self.headers)


@dataclass(frozen=True)
class AuthzRule:
    __pydantic_config__: ClassVar = SPEC_CONFIG

    name: Annotated[str, Len(1, 63)] | None = None
    # YAML's "from" (to_camel drops the trailing underscore).
    from_: Annotated[tuple[Caller, ...], Len(0, 32)] = ()
    to: Annotated[tuple[Operation, ...], Len(0, 32)] = ()


@dataclass(frozen=True)
class AuthorizationPolicySpec:
    __pydantic_config__: ClassVar = SPEC_CONFIG

    target_ref: AuthzTargetRef
    action: Action | None = None
    rules: Annotated[tuple[AuthzRule, ...], Len(0, 64)] = ()
    default_action: Action | None = None
    # DryRun: enforced nowhere; each callee's sidecar counts what it would deny (Envoy's
    # shadow rules), for `tulle stat`, tap and diagnose. `tulle policy promote` enforces it.
    mode: Literal["Enforce", "DryRun"] = "Enforce"
