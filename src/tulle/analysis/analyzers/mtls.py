"""Callers that cannot do mTLS, seen by telemetry: plaintext callers of a PERMISSIVE service
that the analyzed config makes STRICT, and TLS failures on a STRICT service's inbound side."""

from __future__ import annotations

from typing import cast

from tulle.analysis.codes import PLAINTEXT_CALLERS_REFUSED, TLS_FAILURES_ON_STRICT
from tulle.analysis.engine import AnalysisContext
from tulle.analysis.traffic import requests
from tulle.model.kinds import MESH, SERVICE
from tulle.model.meshconfig import MESH_NAME, MeshSpec
from tulle.model.meta import ResourceKey, ServiceRef
from tulle.model.service import MtlsMode, ServiceSpec
from tulle.telemetry.schema import INBOUND, INBOUND_PLAINTEXT

KINDS = (SERVICE, MESH)


def _modes(ctx: AnalysisContext) -> tuple[MtlsMode, dict[ServiceRef, MtlsMode]]:
    """The Mesh's mode and each Service's own override."""
    mesh_mode: MtlsMode = "STRICT"
    overrides: dict[ServiceRef, MtlsMode] = {}
    for resource in ctx.resources(*KINDS):
        if resource.info is MESH:
            mesh_mode = cast(MeshSpec, resource.spec).mtls.mode
            continue
        spec = cast(ServiceSpec, resource.spec)
        if spec.mtls is not None:
            overrides[ServiceRef(resource.meta.namespace, resource.meta.name)] = spec.mtls.mode
    return mesh_mode, overrides


def _blame(ref: ServiceRef, overrides: dict[ServiceRef, MtlsMode], declared_mesh: bool
           ) -> tuple[ResourceKey, str]:
    """The resource that makes ``ref`` STRICT, and how to say so."""
    if ref in overrides:
        return ResourceKey(SERVICE.kind, ref.namespace, ref.name), " (its Service sets it)"
    if declared_mesh:
        return ResourceKey(MESH.kind, "", MESH_NAME), " (the Mesh's mode; its Service sets none)"
    return (ResourceKey(SERVICE.kind, ref.namespace, ref.name),
            " (the default: neither its Service nor the Mesh sets a mode)")


def plaintext_callers(ctx: AnalysisContext) -> None:
    traffic = ctx.traffic()
    mesh_mode, overrides = _modes(ctx)
    declared_mesh = any(r.info is MESH for r in ctx.resources(*KINDS))
    plain: dict[ServiceRef, int] = {}
    for _, ref, values in traffic.inbound((INBOUND_PLAINTEXT,)):
        plain[ref] = plain.get(ref, 0) + requests(values)
    for ref, count in sorted(plain.items()):
        if not count or overrides.get(ref, mesh_mode) != "STRICT":
            continue
        key, origin = _blame(ref, overrides, declared_mesh)
        ctx.report(PLAINTEXT_CALLERS_REFUSED, key, "spec.mtls.mode", requests=count,
                   service=ref.host, window=traffic.describe_window(), origin=origin)


def tls_failures(ctx: AnalysisContext) -> None:
    traffic = ctx.traffic()
    mesh_mode, overrides = _modes(ctx)
    declared_mesh = any(r.info is MESH for r in ctx.resources(*KINDS))
    failures: dict[ServiceRef, int] = {}
    for _, ref, values in traffic.inbound((INBOUND,)):
        failures[ref] = failures.get(ref, 0) + values.get("tls_err", 0)
    for ref, count in sorted(failures.items()):
        if count and overrides.get(ref, mesh_mode) == "STRICT":
            key, _ = _blame(ref, overrides, declared_mesh)
            ctx.report(TLS_FAILURES_ON_STRICT, key, "spec.mtls.mode", failures=count,
                       service=ref.host, window=traffic.describe_window())
