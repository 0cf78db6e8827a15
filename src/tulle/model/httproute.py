"""HTTPRoute, in the shape of the Gateway API (GAMMA mesh profile).

A route attaches to a Service through ``parentRefs`` and takes over all HTTP traffic sent to that
service from inside the mesh. Requests that match no rule get a 404, as the Gateway API says.

This module holds the subset tulle translates today: path matches and weighted backends.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar, Literal

from annotated_types import Ge, Le, Len

from tulle.model.spec_config import SPEC_CONFIG

Port = Annotated[int, Ge(1), Le(65535)]
Weight = Annotated[int, Ge(0), Le(1_000_000)]
CoreGroup = Literal["", "core"]


@dataclass(frozen=True)
class ParentRef:
    __pydantic_config__: ClassVar = SPEC_CONFIG

    name: str
    kind: Literal["Service"] = "Service"
    group: CoreGroup = ""
    namespace: str | None = None
    port: Port | None = None


@dataclass(frozen=True)
class PathMatch:
    __pydantic_config__: ClassVar = SPEC_CONFIG

    type: Literal["Exact", "PathPrefix"] = "PathPrefix"
    value: Annotated[str, Len(1, 1024)] = "/"


@dataclass(frozen=True)
class RouteMatch:
    __pydantic_config__: ClassVar = SPEC_CONFIG

    path: PathMatch = PathMatch()


@dataclass(frozen=True)
class BackendRef:
    __pydantic_config__: ClassVar = SPEC_CONFIG

    name: str
    kind: Literal["Service"] = "Service"
    group: CoreGroup = ""
    namespace: str | None = None
    port: Port | None = None
    weight: Weight = 1


@dataclass(frozen=True)
class RouteRule:
    __pydantic_config__: ClassVar = SPEC_CONFIG

    backend_refs: Annotated[tuple[BackendRef, ...], Len(1, 16)]
    matches: Annotated[tuple[RouteMatch, ...], Len(1, 64)] = (RouteMatch(),)


@dataclass(frozen=True)
class HTTPRouteSpec:
    __pydantic_config__: ClassVar = SPEC_CONFIG

    parent_refs: Annotated[tuple[ParentRef, ...], Len(1, 32)]
    rules: Annotated[tuple[RouteRule, ...], Len(1, 64)]
    # Accepted for Gateway API compatibility; GAMMA routes match on the parent service instead.
    hostnames: tuple[str, ...] = ()
