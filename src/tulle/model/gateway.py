"""Gateway: a way into the mesh from outside, in the Gateway API's shape.

::

    apiVersion: gateway.networking.k8s.io/v1
    kind: Gateway
    metadata: {name: edge, namespace: default}
    spec:
      gatewayClassName: tulle
      listeners:
      - {name: https, port: 8443, protocol: HTTPS, hostname: "*.example.com"}

`tulle gateway run --name edge --port 8443 --tls-cert C --tls-key K` runs it: an Envoy with
its own agent and its own mesh identity (service account: the gateway's name), which serves
the listener on that port and routes with the HTTPRoutes whose ``parentRefs`` name the
Gateway (``kind: Gateway``). Its TLS certificate and key are files on the gateway's host:
the control plane knows their paths, never the key.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, ClassVar, Literal

from annotated_types import Ge, Le, Len

from tulle.model.external import dns_name_problem
from tulle.model.meta import dns_label_problem
from tulle.model.spec_config import SPEC_CONFIG

FieldIssue = tuple[str, str, str]


@dataclass(frozen=True)
class GatewayListener:
    __pydantic_config__: ClassVar = SPEC_CONFIG

    name: Annotated[str, Len(1, 63)]
    port: Annotated[int, Ge(1), Le(65535)]
    protocol: Literal["HTTP", "HTTPS"] = "HTTP"
    # Only requests for this host (or, "*.example.com", its subdomains).
    hostname: Annotated[str, Len(1, 253)] | None = None


@dataclass(frozen=True)
class GatewaySpec:
    __pydantic_config__: ClassVar = SPEC_CONFIG

    listeners: Annotated[tuple[GatewayListener, ...], Len(1, 16)]
    gateway_class_name: Annotated[str, Len(1, 253)] = "tulle"

    def listener_on(self, port: int) -> GatewayListener | None:
        return next((item for item in self.listeners if item.port == port), None)


@dataclass(frozen=True)
class GatewayBinding:
    """How a gateway process serves its Gateway: the port it listens on, where, and its TLS
    certificate and key files on its own host (none: plain HTTP)."""

    port: int
    listen_address: str = "0.0.0.0"
    tls_cert: str = ""
    tls_key: str = ""


def gateway_problems(spec: GatewaySpec) -> Iterator[FieldIssue]:
    names: set[str] = set()
    ports: set[int] = set()
    for i, listener in enumerate(spec.listeners):
        where = f"spec.listeners[{i}]"
        if (why := dns_label_problem(listener.name)) is not None:
            yield f"{where}.name", why, ""
        if listener.name in names:
            yield f"{where}.name", f'two listeners are named "{listener.name}"', ""
        if listener.port in ports:
            yield (f"{where}.port", f"two listeners use port {listener.port}",
                   "a gateway process serves one port: one listener per port")
        names.add(listener.name)
        ports.add(listener.port)
        if listener.hostname is not None:
            name = listener.hostname.removeprefix("*.")
            if (why := dns_name_problem(name)) is not None:
                yield (f"{where}.hostname", why,
                       "a host such as shop.example.com, or *.example.com")
