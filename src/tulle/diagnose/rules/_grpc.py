"""Findings in gRPC terms for gRPC services.

A gRPC call fails by its grpc-status, inside an HTTP 200; telemetry counts such failures as
5xx (so every rule sees them), and keeps the failed calls per status as ``g14`` (UNAVAILABLE)
beside them. For a service that speaks gRPC, findings name the statuses instead of "5xx".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from tulle.diagnose.evidence import Evidence, requests
from tulle.model import grpc_status
from tulle.model.meta import ServiceRef
from tulle.telemetry.schema import GRPC_CALLS, GRPC_CODE_PREFIX


def all_grpc(values: Mapping[str, int]) -> bool:
    """Every request of the series was a gRPC call."""
    calls = values.get(GRPC_CALLS, 0)
    return calls > 0 and calls >= requests(values)


def speaks_grpc(evidence: Evidence, refs: Iterable[ServiceRef],
                values: Mapping[str, int] | None = None) -> bool:
    """A service declared ``protocol: grpc``, or calls seen as gRPC only."""
    if any(s.protocol == "grpc" for ref in refs if (s := evidence.mesh.services.get(ref))):
        return True
    return values is not None and all_grpc(values)


def statuses(values: Mapping[str, int]) -> list[tuple[str, int]]:
    """(code as said, failed calls) per failing grpc-status, the most frequent first."""
    counts = [(grpc_status.describe(int(key[len(GRPC_CODE_PREFIX):])), count)
              for key, count in values.items()
              if key.startswith(GRPC_CODE_PREFIX) and key[len(GRPC_CODE_PREFIX):].isdigit()
              and count > 0]
    return sorted(counts, key=lambda item: (-item[1], item[0]))


def status_text(values: Mapping[str, int]) -> str:
    """ "gRPC status UNAVAILABLE (14)"; "gRPC statuses UNAVAILABLE (14), INTERNAL (13)";
    "gRPC errors" when no status was counted (Envoy's own answers, an older sidecar)."""
    found = [name for name, _ in statuses(values)]
    if not found:
        return "gRPC errors"
    return f"gRPC status{'es' if len(found) > 1 else ''} {', '.join(found)}"


def status_counts(values: Mapping[str, int]) -> str:
    """ "UNAVAILABLE (14): 14, INTERNAL (13): 2", or "" when none was counted."""
    return ", ".join(f"{name}: {count}" for name, count in statuses(values))
