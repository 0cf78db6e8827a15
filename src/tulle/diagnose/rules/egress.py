"""Diagnosis rules: calls to hosts outside the mesh's registry, refused with 502 under the
Mesh's outbound mode REGISTRY_ONLY (TUL1030).

The evidence is the caller's sidecar's log of refused calls, counted by host by the control
plane (a REFUSED series per host). A host that looks like a mesh service's name is most likely
a typo; any other is a host outside the mesh that needs an ExternalService, or ALLOW_ANY.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator

from tulle.diagnose.evidence import Evidence, requests
from tulle.diagnose.model import Finding, Scope, Severity, proxy_subject
from tulle.telemetry.schema import EGRESS, OUTBOUND, REFUSED

# Refused calls are an error from this share of a caller's requests; a few are a warning.
REFUSED_ERROR_SHARE = 0.05


def refused_hosts(evidence: Evidence) -> dict[str, dict[str, int]]:
    """Caller node -> host as named -> calls refused in the window."""
    out: dict[str, dict[str, int]] = {}
    for (node, key), values in sorted(evidence.window.counters.items()):
        if key.kind == REFUSED and values.get("refused"):
            hosts = out.setdefault(node, {})
            hosts[key.destination] = hosts.get(key.destination, 0) + values["refused"]
    return out


def _bare(host: str) -> str:
    """The host without the port the application named."""
    if host.startswith("["):  # [::1]:8080
        return host.partition("]")[0] + "]"
    name, _, port = host.rpartition(":")
    return name if name and port.isdigit() else host


def refused_egress(evidence: Evidence, scope: Scope) -> Iterator[Finding]:
    """TUL1030: a caller's sidecar refused calls to hosts in no scope (REGISTRY_ONLY)."""
    mode = evidence.mesh.settings.outbound.mode
    mesh_hosts = sorted({host for ref in evidence.mesh.services for host in (
        ref.name, f"{ref.name}.{ref.namespace}")})
    # Services that ran in the window: calls to one that has left since are TUL1001's.
    departed = {host for info in evidence.nodes.values() if info.service
                for host in (info.service, f"{info.service}.{info.namespace}")}
    for node, all_hosts in refused_hosts(evidence).items():
        hosts = {h: n for h, n in all_hosts.items() if _bare(h) not in departed}
        if not hosts:
            continue
        refused = sum(hosts.values())
        sent = refused + sum(requests(v) for (n, key), v in evidence.window.counters.items()
                             if n == node and key.kind in (OUTBOUND, EGRESS))
        severity = Severity.ERROR if refused / max(sent, 1) >= REFUSED_ERROR_SHARE \
            else Severity.WARNING
        typos = {}
        for host in hosts:
            guess = difflib.get_close_matches(_bare(host), mesh_hosts, n=1, cutoff=0.75)
            if guess:
                typos[host] = guess[0]
        outside = [_bare(h) for h in hosts if h not in typos and not h.startswith("(")]
        listed = ", ".join(f"{host} ({count})" for host, count in
                           sorted(hosts.items(), key=lambda item: (-item[1], item[0])))
        evidence_lines = [f"{node}: {refused} calls refused with 502 in the window, to "
                          f"{listed}",
                          f"the Mesh's spec.outbound.mode is {mode}: only mesh services and "
                          "ExternalServices are reachable"]
        evidence_lines += [f"{host} looks like the mesh service {guess}"
                           for host, guess in sorted(typos.items())]
        fixes = []
        if typos:
            fixes.append("call " + ", ".join(f"{guess} instead of {host}"
                                              for host, guess in sorted(typos.items())))
        if outside:
            first = sorted(outside)[0]
            fixes.append(
                f"to let {node} reach {', '.join(sorted(set(outside)))}, declare each as an "
                f"ExternalService (`kind: ExternalService`, spec: {{host: {first}, ports: "
                "[{port: 443, protocol: tls}]}`, see docs/resources.md), or set the Mesh's "
                "spec.outbound.mode: ALLOW_ANY to pass every host through")
        mode_note = "" if mode == "REGISTRY_ONLY" else (
            f" (the mode is {mode} now: these were refused before it changed)")
        yield Finding(
            "TUL1030", severity, min(90.0, 50.0 + refused), proxy_subject(node),
            f"{node} calls hosts that are neither mesh services nor ExternalServices, so its "
            f"sidecar refuses them with 502{mode_note}: the calls never left the host.",
            tuple(evidence_lines), "; ".join(fixes), sources=(proxy_subject(node),))


RULES = (refused_egress,)
