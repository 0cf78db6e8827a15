"""Diagnosis rules: identity and mTLS (TUL1050-TUL1055).

Two kinds of evidence meet here. The control plane knows every certificate it issued (the
identity status: SPIFFE ID, expiry, whether it chains to the trust bundle, whether the agent
renewed on time). Envoy counts each failed handshake by reason (telemetry): on a sidecar's
inbound listener ``verify_fail`` (the caller's certificate does not verify: another CA, expired,
another trust domain), ``no_cert`` (TLS without a certificate) and ``tls_err`` (anything else,
plaintext included); on a caller's cluster ``verify_fail`` and ``san_fail`` (the service's
certificate is not the identity the caller expects).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

from tulle.diagnose.evidence import Evidence, Values
from tulle.diagnose.model import Finding, Scope, Severity, proxy_subject, service_subject
from tulle.diagnose.rules import Rule
from tulle.humanize import format_duration
from tulle.model.meta import ServiceRef

# Caller-side counters of failed handshakes with a service.
_CALLER_TLS = ("tls_err", "verify_fail", "san_fail")
# Plaintext connections refused by a STRICT service: a stray probe is a warning; this many in
# the window is a client that keeps trying, an error.
PLAINTEXT_ERROR_MIN = 10


def _when(at: float) -> str:
    return dt.datetime.fromtimestamp(at, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")



def _tls_failures(values: Values) -> int:
    return sum(values.get(k, 0) for k in _CALLER_TLS)


def _callers_failing(evidence: Evidence, ref: ServiceRef | None
                     ) -> list[tuple[str, Values]]:
    """(caller node, its counters) for every edge to ``ref`` with failed handshakes."""
    if ref is None:
        return []
    return [(node, values) for node, dst, values in evidence.edges()
            if dst == ref and _tls_failures(values)]


def _caller_lines(callers: list[tuple[str, Values]], service: str) -> list[str]:
    lines = []
    for node, values in callers:
        detail = ", ".join(f"{k} {values[k]}" for k in _CALLER_TLS if values.get(k))
        fivexx = values.get("rq5", 0)
        lines.append(f"{node} -> {service}: {_tls_failures(values)} failed TLS handshakes "
                     f"({detail}), {fivexx} requests answered 5xx in the window")
    return lines


def certificate_expired(evidence: Evidence, scope: Scope) -> Iterator[Finding]:
    for cert in evidence.identity.certificates:
        node, not_after = cert.node, cert.not_after
        if node not in evidence.workloads or not_after > evidence.now:
            continue
        ref = evidence.service_of(node)
        callers = _callers_failing(evidence, ref)
        service = ref.host if ref else "its service"
        lines = [f"certificate {cert.spiffe_id} (serial {cert.serial}) "
                 f"expired {format_duration(evidence.now - not_after)} ago, at {_when(not_after)}",
                 "its agent did not renew it: agents renew at about half the lifetime"]
        lines += _caller_lines(callers, service)
        yield Finding(
            "TUL1050", Severity.CRITICAL, 95.0 if callers else 85.0, proxy_subject(node),
            f"The certificate of {node} has expired, so every mTLS handshake with it fails: "
            f"callers of {service} get 503 (UF) from this instance.",
            tuple(lines),
            f"the agent of {node} has stopped renewing: see `tulle certs status` and its log "
            f"(workloads/{node}/agent.log in the state directory); if it is hung or stopped, "
            "restart the workload (stop it and `tulle run` it again) for a fresh certificate",
            related=(*((service_subject(ref),) if ref else ()),
                     *(proxy_subject(n) for n, _ in callers)))


def certificate_untrusted(evidence: Evidence, scope: Scope) -> Iterator[Finding]:
    trust_domain = evidence.identity.trust_domain or "?"
    for cert in evidence.identity.certificates:
        node = cert.node
        if node not in evidence.workloads or cert.chains_to_bundle:
            continue
        if cert.not_after <= evidence.now:
            continue  # expired: TUL1050 says so
        ref = evidence.service_of(node)
        callers = _callers_failing(evidence, ref)
        lines = [f"certificate {cert.spiffe_id} was issued by "
                 f"{cert.issuer_id}, which is not in the trust bundle of "
                 f"{trust_domain}"]
        lines += _caller_lines(callers, ref.host if ref else "its service")
        yield Finding(
            "TUL1051", Severity.CRITICAL, 90.0, proxy_subject(node),
            f"The certificate of {node} does not chain to the mesh's trust bundle, so its "
            "peers refuse it (a root rotation dropped its issuer before it renewed).",
            tuple(lines),
            f"make {node} renew now (`tulle certs rotate` finishes a rotation in order; a "
            "restarted workload enrols again); if a rotation is under way, do not drop the "
            "old root before every workload has renewed",
            related=(*((service_subject(ref),) if ref else ()),
                     *(proxy_subject(n) for n, _ in callers)))


def renewal_missed(evidence: Evidence, scope: Scope) -> Iterator[Finding]:
    for cert in evidence.identity.certificates:
        node, not_after = cert.node, cert.not_after
        if node not in evidence.workloads or not cert.missed_renewal:
            continue
        if not_after <= evidence.now:
            continue  # already expired: TUL1050
        ref = evidence.service_of(node)
        yield Finding(
            "TUL1052", Severity.WARNING, 60.0, proxy_subject(node),
            f"The agent of {node} missed its certificate renewal; the certificate expires in "
            f"{format_duration(not_after - evidence.now)}, and then its traffic fails.",
            (f"certificate {cert.spiffe_id} expires at {_when(not_after)}",
             "agents renew at about half the lifetime; this one is past three quarters"),
            f"check that the agent of {node} runs and reaches the control plane "
            f"(`tulle certs status`, workloads/{node}/agent.log); restart the workload if "
            "it is hung",
            related=(service_subject(ref),) if ref else ())


def caller_certificate_rejected(evidence: Evidence, scope: Scope) -> Iterator[Finding]:
    trust_domain = evidence.identity.trust_domain or "the mesh"
    for node in sorted(evidence.nodes.keys() | evidence.workloads.keys()):
        inbound = evidence.inbound(node)
        refused = inbound.get("verify_fail", 0)
        if not refused:
            continue
        ref = evidence.service_of(node)
        service = ref.host if ref else node
        mesh_callers = _callers_failing(evidence, ref)
        lines = [f"{node}'s inbound listener refused {refused} TLS handshakes in the window "
                 "because the caller's certificate did not verify",
                 f"{inbound.get('tls_ok', 0)} handshakes succeeded meanwhile"]
        lines += _caller_lines(mesh_callers, service)
        if not mesh_callers:
            lines.append("no sidecar of the mesh reports failures calling it: the refused "
                         "callers are outside the mesh")
        yield Finding(
            "TUL1053", Severity.ERROR, 70.0, service_subject(ref) if ref else proxy_subject(node),
            f"{service} refuses callers whose client certificate is not one of this mesh's: "
            f"signed by another CA, expired, or for a trust domain other than {trust_domain}.",
            tuple(lines),
            "run the caller with a sidecar (`tulle run --service NAME -- COMMAND`) so that it "
            f"gets a certificate of {trust_domain}; a client with its own certificate must "
            "use one issued by this mesh's CA and valid now (`tulle certs status` shows the "
            "trust bundle)",
            related=(proxy_subject(node), *(proxy_subject(n) for n, _ in mesh_callers)))


def peer_identity_mismatch(evidence: Evidence, scope: Scope) -> Iterator[Finding]:
    issued = {c.node: c.spiffe_id for c in evidence.identity.certificates}
    by_service: dict[ServiceRef, list[tuple[str, Values]]] = {}
    for node, ref, values in evidence.edges():
        if values.get("san_fail", 0):
            by_service.setdefault(ref, []).append((node, values))
    for ref, callers in sorted(by_service.items()):
        service = evidence.mesh.services.get(ref)
        expected = service.identities if service else ()
        lines = [f"{node} refused {values['san_fail']} handshakes with {ref.host}: the "
                 "certificate's SPIFFE ID is not one it accepts" for node, values in callers]
        lines.append("callers accept: " + (", ".join(expected) or "(no identity known)"))
        strangers = []
        for workload in evidence.instances_of(ref):
            identity = issued.get(workload.node_id, "")
            if identity and expected and identity not in expected:
                strangers.append(workload.node_id)
                lines.append(f"{workload.node_id} was issued {identity}")
        yield Finding(
            "TUL1054", Severity.ERROR, 75.0, service_subject(ref),
            f"Callers of {ref.host} refuse the certificate they are shown: its identity is not "
            "one of the service's, so something other than its registered instances answers "
            "on an endpoint, or a caller's configuration is out of date.",
            tuple(lines),
            "check what listens on the service's endpoints (`tulle describe service "
            f"{ref.name} -n {ref.namespace}`) and that every caller is SYNCED "
            "(`tulle proxy-status`); a workload's identity comes from --service-account",
            related=(*(proxy_subject(n) for n, _ in callers),
                     *(proxy_subject(n) for n in strangers)))


def plaintext_to_strict(evidence: Evidence, scope: Scope) -> Iterator[Finding]:
    for node in sorted(evidence.nodes.keys() | evidence.workloads.keys()):
        ref = evidence.service_of(node)
        service = evidence.mesh.services.get(ref) if ref else None
        if ref is None or service is None or service.mtls_mode != "STRICT":
            continue
        inbound = evidence.inbound(node)
        no_cert = inbound.get("no_cert", 0)
        # A mesh caller whose handshake fails also leaves a connection error here: count
        # those errors only when no sidecar reports failing to call this service.
        other = 0 if _callers_failing(evidence, ref) else inbound.get("tls_err", 0)
        if not (no_cert or other):
            continue
        refused = no_cert + other
        lines = [f"{node}'s inbound listener (STRICT mTLS) in the window: "
                 f"{other} connections that were not a TLS handshake (plaintext), "
                 f"{no_cert} TLS handshakes without a client certificate"]
        yield Finding(
            "TUL1055", Severity.ERROR if refused >= PLAINTEXT_ERROR_MIN else Severity.WARNING,
            65.0 if refused >= PLAINTEXT_ERROR_MIN else 30.0, service_subject(ref),
            f"Clients without a mesh certificate call {ref.host} directly on its sidecar's "
            "inbound port; the service is STRICT, so they are refused.",
            tuple(lines),
            "give the client a sidecar (`tulle run --service NAME -- COMMAND`) and call "
            f"http://{ref.name}/ through it; to let plaintext callers in while migrating, set "
            f"spec.mtls.mode: PERMISSIVE on Service {ref.namespace}/{ref.name}",
            related=(proxy_subject(node),))


RULES: tuple[Rule, ...] = (certificate_expired, certificate_untrusted, renewal_missed,
                           caller_certificate_rejected, peer_identity_mismatch,
                           plaintext_to_strict)
