"""Every finding code of `tulle diagnose`, in one place. Codes are stable and never reused.

TUL1001-TUL1049: the data plane (endpoints, connections, resilience, routing, limits).
TUL1050-TUL1099: identity and the control plane. Codes below TUL1000 belong to `tulle analyze`.
Each code has a page ``docs/diagnostics/<CODE>.md`` (cause, evidence, fix), and the index
``docs/diagnostics/findings.md`` lists them all; a unit test keeps the three in step.
Append new codes at the end of their range's block.
"""

from __future__ import annotations

from dataclasses import dataclass

from tulle.diagnose.model import Severity


@dataclass(frozen=True)
class FindingCode:
    code: str
    name: str  # a short slug, stable like the code
    severity: Severity  # the usual severity; a rule may raise or lower it for one finding
    title: str  # what the finding says, in a few words


CODES: tuple[FindingCode, ...] = (
    # -- data plane: TUL1001-TUL1049 ------------------------------------------------------------
    FindingCode("TUL1001", "no-healthy-endpoints", Severity.CRITICAL,
                "a called service has no healthy endpoint (UH)"),
    FindingCode("TUL1002", "instance-not-ready", Severity.ERROR,
                "an instance's application does not accept connections on its port"),
    FindingCode("TUL1003", "app-connect-failures", Severity.CRITICAL,
                "a sidecar cannot connect to its own application (UF)"),
    FindingCode("TUL1004", "upstream-connect-failures", Severity.ERROR,
                "callers cannot connect to a service's sidecars (UF)"),
    FindingCode("TUL1005", "circuit-breaker-open", Severity.ERROR,
                "a connection-pool limit rejects requests (UO)"),
    FindingCode("TUL1006", "outlier-ejection", Severity.ERROR,
                "instances are ejected by outlier detection"),
    FindingCode("TUL1007", "retries-exhausted", Severity.ERROR,
                "requests fail after using up their retries (URX)"),
    FindingCode("TUL1008", "retry-amplification", Severity.WARNING,
                "retries multiply the load on a failing service"),
    FindingCode("TUL1009", "upstream-timeouts", Severity.ERROR,
                "requests time out waiting for a service (UT)"),
    FindingCode("TUL1010", "rate-limited", Severity.WARNING,
                "a service's rate limit answers 429 (RL)"),
    FindingCode("TUL1011", "route-rate-limited", Severity.WARNING,
                "a route rule's rate limit answers 429 in the caller (RL)"),
    FindingCode("TUL1012", "no-route", Severity.ERROR,
                "requests match no HTTPRoute rule and get 404 (NR)"),
    FindingCode("TUL1013", "edge-errors", Severity.ERROR,
                "calls on an edge fail with 5xx"),
    # TUL1014 was never released; it stays unused.
    FindingCode("TUL1015", "proxy-unreachable", Severity.WARNING,
                "a sidecar's agent cannot be reached and its process is gone"),
    FindingCode("TUL1016", "controlplane-unreachable", Severity.CRITICAL,
                "the control plane is not running"),
    FindingCode("TUL1017", "sidecar-not-serving", Severity.CRITICAL,
                "a registered workload's Envoy stopped its listeners or left LIVE"),
    FindingCode("TUL1018", "sidecar-restarting", Severity.ERROR,
                "a sidecar's Envoy keeps exiting and the agent restarts it"),
    FindingCode("TUL1019", "masked-failures", Severity.WARNING,
                "an instance fails attempts that callers' retries hide"),
    FindingCode("TUL1020", "version-worse", Severity.WARNING,
                "one version of a service answers worse than its siblings"),
    FindingCode("TUL1021", "latency-regression", Severity.WARNING,
                "a service's p99 latency rose against its own recent past"),
    FindingCode("TUL1022", "slow-instance", Severity.WARNING,
                "one instance answers much slower than its peers"),
    FindingCode("TUL1023", "near-timeout", Severity.WARNING,
                "a route rule's p99 latency approaches its timeout"),
    FindingCode("TUL1024", "requests-hang", Severity.ERROR,
                "requests hang until the timeout: accepted, never answered"),
    FindingCode("TUL1025", "fault-injected", Severity.WARNING,
                "a TrafficPolicy injects errors or delays"),
    FindingCode("TUL1026", "client-errors-after-change", Severity.ERROR,
                "4xx answers rose right after a configuration change"),
    FindingCode("TUL1027", "routes-to-nothing", Severity.ERROR,
                "a route sends a share of traffic to a backend with no ready instance"),
    FindingCode("TUL1028", "authorization-denies", Severity.WARNING,
                "AuthorizationPolicies deny calls to a service (403 from its sidecars)"),
    FindingCode("TUL1029", "authorization-would-deny", Severity.WARNING,
                "a dry-run AuthorizationPolicy would deny calls if promoted"),
    FindingCode("TUL1030", "egress-refused", Severity.WARNING,
                "calls to hosts outside the registry are refused (REGISTRY_ONLY)"),
    FindingCode("TUL1031", "route-dry-run-would-fail", Severity.WARNING,
                "a dry-run HTTPRoute would fail requests if promoted"),
    FindingCode("TUL1032", "slo-burning-fast", Severity.ERROR,
                "a ServiceLevelObjective's error budget burns at the paging rate"),
    FindingCode("TUL1033", "rollout-held", Severity.WARNING,
                "a Rollout stopped on an edit, rolled its canary back, or waits for an "
                "instance"),
    FindingCode("TUL1036", "app-frozen", Severity.CRITICAL,
                "an instance's application is alive but stopped (frozen)"),
    FindingCode("TUL1037", "envoy-frozen", Severity.CRITICAL,
                "a sidecar's Envoy is alive but does not answer (frozen)"),
    FindingCode("TUL1038", "agent-frozen", Severity.ERROR,
                "a sidecar's agent is alive but does not answer (frozen)"),
    FindingCode("TUL1039", "evidence-missing", Severity.WARNING,
                "fresh evidence could not be read from some sidecars"),
    # -- identity and control plane: TUL1050-TUL1099 (appended by their rules' authors) -----
    FindingCode("TUL1050", "certificate-expired", Severity.CRITICAL,
                "a sidecar's certificate has expired"),
    FindingCode("TUL1051", "certificate-untrusted", Severity.CRITICAL,
                "a sidecar's certificate does not chain to the mesh's trust bundle"),
    FindingCode("TUL1052", "renewal-missed", Severity.WARNING,
                "a sidecar's agent missed its certificate renewal"),
    FindingCode("TUL1053", "caller-certificate-rejected", Severity.ERROR,
                "a sidecar refuses callers whose certificate does not verify"),
    FindingCode("TUL1054", "peer-identity-mismatch", Severity.ERROR,
                "callers refuse a service's certificate: not the identity they expect"),
    FindingCode("TUL1055", "plaintext-to-strict", Severity.ERROR,
                "clients without a mesh certificate call a STRICT service"),
    FindingCode("TUL1060", "config-rejected", Severity.CRITICAL,
                "a sidecar rejected (NACKed) the configuration sent to it"),
    FindingCode("TUL1061", "config-stale", Severity.ERROR,
                "a sidecar has not acknowledged the configuration sent to it"),
    FindingCode("TUL1062", "proxy-disconnected", Severity.ERROR,
                "a registered sidecar is not connected to the control plane"),
    FindingCode("TUL1063", "proxy-memory-outlier", Severity.WARNING,
                "a sidecar uses far more memory than its peers"),
    FindingCode("TUL1064", "stats-explosion", Severity.WARNING,
                "a sidecar carries far more stats than its peers"),
    FindingCode("TUL1065", "change-preceded-errors", Severity.ERROR,
                "errors started right after a configuration change"),
    FindingCode("TUL1066", "xds-credential-presented-twice", Severity.CRITICAL,
                "someone else presented a sidecar's xDS credential"),
    FindingCode("TUL1090", "controlplane-not-answering", Severity.CRITICAL,
                "the control plane's process is alive but does not answer (frozen)"),
    FindingCode("TUL1091", "replica-not-answering", Severity.WARNING,
                "another control-plane replica did not answer: its agents' reports are "
                "missing"),
    FindingCode("TUL1092", "host-clock-off", Severity.WARNING,
                "a host's clock is off from the control plane's (error past 30 s)"),
    FindingCode("TUL1093", "host-cut-off", Severity.ERROR,
                "no agent of another host answers the control plane: the host is cut off"),
)

_BY_CODE = {c.code: c for c in CODES}


def lookup(code: str) -> FindingCode:
    """The registry entry of ``code``; a KeyError names the code (a bug in a rule)."""
    try:
        return _BY_CODE[code]
    except KeyError:
        raise KeyError(f"finding code {code} is not in tulle.diagnose.codes.CODES") from None
