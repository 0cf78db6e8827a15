"""Envoy's response flags (``%RESPONSE_FLAGS%``): what each says happened to a request.

A sidecar's access-log entry (and so a tap event) carries the short flags, comma-separated
("UF,URX"). The views that show requests label them with these words, so that a request the
caller's sidecar answered itself (no healthy upstream, a connect failure, a circuit breaker)
is not mistaken for one that went out in plaintext.
"""

from __future__ import annotations

# Envoy's short flag -> what happened, in Envoy's own order of documentation.
MEANINGS: dict[str, str] = {
    "UH": "no healthy upstream",
    "UF": "upstream connection failure",
    "UO": "upstream overflow (circuit breaker)",
    "NR": "no route",
    "URX": "upstream retry limit exceeded",
    "NC": "upstream cluster not found",
    "DT": "max request duration exceeded",
    "DC": "downstream connection terminated",
    "LH": "local health check failed",
    "UT": "upstream request timeout",
    "LR": "connection local reset",
    "UR": "upstream remote reset",
    "UC": "upstream connection terminated",
    "DI": "delay injected (fault)",
    "FI": "abort injected (fault)",
    "RL": "rate limited",
    "UAEX": "refused by external authorization",
    "RLSE": "rate limit service error",
    "IH": "invalid header value",
    "SI": "stream idle timeout",
    "DPE": "downstream protocol error",
    "UPE": "upstream protocol error",
    "UMSDR": "upstream max stream duration reached",
    "OM": "overload manager",
    "DF": "DNS resolution failed",
    "DO": "dropped by overload",
    "NFCF": "no filter config found",
    "RBAC": "denied by an AuthorizationPolicy",
}

# Flags that mean the request never had an upstream connection to speak of: the sidecar
# answered it itself, or the connection never came up (UF also covers failed TLS
# handshakes). Such a request has no TLS version, and is not plaintext either.
NO_CONNECTION = frozenset({"UH", "UF", "UO", "NR", "NC", "LH", "FI", "RL", "UAEX", "RLSE",
                           "IH", "OM", "DF", "DO", "NFCF", "RBAC"})


def parse(flags: str | None) -> tuple[str, ...]:
    """The flags of a ``%RESPONSE_FLAGS%`` value; "-" or nothing is none."""
    if not flags or flags == "-":
        return ()
    return tuple(flag.strip() for flag in flags.split(",") if flag.strip())


def meaning(flag: str) -> str:
    return MEANINGS.get(flag, f"response flag {flag}")


def no_connection(flags: str | None) -> str | None:
    """The first flag of ``flags`` saying the request had no upstream connection, or None."""
    return next((flag for flag in parse(flags) if flag in NO_CONNECTION), None)
