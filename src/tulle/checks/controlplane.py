"""Check functions for the control plane, its store and its CA. Each takes the API client
and returns an Outcome; the table in ``catalog`` says which is which."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from cryptography import x509

from tulle import __version__
from tulle.checks import certificates as certs
from tulle.checks.client import CheckApi
from tulle.checks.runner import Outcome
from tulle.humanize import format_duration

CA_MIN_DAYS = 60.0


# -- control plane -----------------------------------------------------------------------------

def running(api: CheckApi) -> Outcome:
    if not api.paths.root.is_dir():
        return Outcome.failed(f"the state directory {api.paths.root} does not exist")
    lock = api.lock_state()
    if not lock.held:
        return Outcome.failed(f"no control plane holds the state directory {api.paths.root}",
                              stateDir=str(api.paths.root))
    return Outcome.ok(f"pid {lock.pid}, state dir {api.paths.root}", pid=lock.pid,
                      stateDir=str(api.paths.root))


def reachable(api: CheckApi) -> Outcome:
    probe = api.probe_status()  # raises ControlPlaneUnavailable when nothing answers
    return Outcome.ok(f"{api.client.url} answered (HTTP {probe.status})", url=api.client.url)


def authenticated(api: CheckApi) -> Outcome:
    probe = api.probe_status()
    if probe.status == 401:
        return Outcome.failed("the API refused our token (HTTP 401)")
    if probe.status != 200 or not isinstance(probe.body, dict):
        return Outcome.failed(f"GET /v1/status answered HTTP {probe.status}")
    return Outcome.ok("the API accepted the token")


def version(api: CheckApi) -> Outcome:
    server = str(api.status().get("version", ""))
    if server != __version__:
        return Outcome.failed(f"the control plane runs tulle {server}, this CLI is "
                              f"{__version__}", controlPlane=server, cli=__version__)
    return Outcome.ok(f"tulle {server}", controlPlane=server, cli=__version__)


# -- store -------------------------------------------------------------------------------------

def store_integrity(api: CheckApi) -> Outcome:
    report = api.store_health()
    if not report.get("opens"):
        return Outcome.failed("; ".join(report.get("errors", [])) or "the store does not open",
                              **report)
    if report.get("backend") == "etcd":
        return Outcome.ok(f"etcd answers (revision {report.get('revision')})", **report)
    if report.get("integrity") != ["ok"]:
        problems = report.get("integrity") or report.get("errors") or ["no answer"]
        return Outcome.failed("SQLite's integrity check failed: " + "; ".join(problems),
                              **report)
    return Outcome.ok(f"{report.get('path')} passes SQLite's integrity check", **report)


def store_readable(api: CheckApi) -> Outcome:
    report = api.store_health()
    if report.get("errors"):
        return Outcome.failed("; ".join(report["errors"]), **report)
    if report.get("revision") is None or report.get("historyEntries") is None:
        return Outcome.failed("the revision or the history could not be read", **report)
    return Outcome.ok(f"revision {report['revision']}, {report['historyEntries']} history "
                      f"entries", **report)


# -- replicas and etcd -------------------------------------------------------------------------

CLOCK_OFFSET_MAX_S = 1.0


def replicas_answering(api: CheckApi) -> Outcome:
    report = api.replicas()
    if report.get("store") != "etcd":
        return Outcome.ok("one control plane (SQLite store): no replicas", **report)
    rows = report.get("replicas", [])
    silent = [r for r in rows if not r.get("answered")]
    lost = [_lost(r) for r in report.get("lost", [])]
    if silent or lost:
        return Outcome.failed("; ".join([*(f"replica {r['replica']} at {_where(r)} does not "
                                           f"answer ({r.get('why')})" for r in silent), *lost])
                              + f" ({len(rows) - len(silent)} of {len(rows)} announced "
                              "answer)", **report)
    return Outcome.ok(f"{len(rows)} replica{'s' if len(rows) != 1 else ''} answer: "
                      + ", ".join(f"{r['replica']} ({r['host']}:{r['apiPort']})"
                                  for r in rows) + _singletons(report), **report)


def _where(row: dict[str, Any]) -> str:
    """A replica's API, and its host when that is not this one's loopback."""
    api = f"{row['host']}:{row['apiPort']}"
    agent_host = row.get("agentHost")
    return f"{api} on host {agent_host}" if agent_host and agent_host != row["host"] else api


def _lost(row: dict[str, Any]) -> str:
    held = row.get("workloads") or []
    return (f"replica {row['replica']} on host {row['host']} is lost"
            + _silent_since(max(0.0, time.time() - float(row["lastSeen"])))
            + ": its etcd lease ran out (its host is cut off, or it died or froze)"
            + (f"; {len(held)} workload(s) registered with it and with no replica since "
               "are out of the mesh: " + ", ".join(held[:10]) if held else ""))


def _singletons(report: dict[str, Any]) -> str:
    """Which replica runs each singleton job: an operator looks for its log there."""
    held = report.get("singletons") or {}
    return "".join(f"; {name} runs on {holder}" if holder else
                   f"; no replica runs {name} at this moment (one takes it within the "
                   "lease's 10 s)" for name, holder in sorted(held.items()))


def replicas_clock(api: CheckApi) -> Outcome:
    report = api.replicas()
    if report.get("store") != "etcd":
        return Outcome.ok("one control plane: no clocks to compare", **report)
    off = [r for r in report.get("replicas", []) if r.get("clockOffsetSeconds") is not None
           and abs(r["clockOffsetSeconds"]) > CLOCK_OFFSET_MAX_S]
    if off:
        return Outcome.warning("; ".join(
            f"replica {r['replica']}'s clock is {r['clockOffsetSeconds']:+.1f}s from this "
            "one's" for r in off), **report)
    return Outcome.ok(f"every replica's clock is within {CLOCK_OFFSET_MAX_S:g}s of this one's",
                      **report)


# -- hosts -------------------------------------------------------------------------------------

# Past this, certificates the control plane issues can be not yet valid on that host (they are
# backdated 30 s), or already expired (they may live only minutes).
HOST_CLOCK_FAIL_S = 30.0


def _host_name(host: dict[str, Any]) -> str:
    return "this host" if not host.get("remote") else f"host {host['host']}"


def hosts_reachable(api: CheckApi) -> Outcome:
    hosts = api.hosts().get("hosts", [])
    if not hosts:
        return Outcome.ok("no workloads registered: no hosts to reach", hosts=hosts)
    silent = [(h, s) for h in hosts for s in h.get("notAnswering", [])]
    if silent:
        return Outcome.failed("; ".join(
            f"{_host_name(h)}: the agent of {s['node']} does not answer ({s['why']})"
            + _silent_since(s.get("silentSeconds"))
            for h, s in silent[:5]) + (f"; and {len(silent) - 5} more" if len(silent) > 5
                                      else ""), hosts=hosts)
    agents = sum(h.get("answered", 0) for h in hosts)
    return Outcome.ok(f"{len(hosts)} host(s), all {agents} agents answer", hosts=hosts)


def _silent_since(seconds: float | None) -> str:
    """Since when the control plane heard nothing from an agent (its last report)."""
    if seconds is None:
        return ", and it never reported"
    since = time.strftime("%H:%M:%S", time.localtime(time.time() - seconds))
    return f", silent for {format_duration(seconds)} (since {since})"


def hosts_clock(api: CheckApi) -> Outcome:
    hosts = api.hosts().get("hosts", [])
    measured = [h for h in hosts if h.get("clockOffsetSeconds") is not None]
    if not measured:
        return Outcome.ok("no agent answered: no clocks to compare" if hosts
                          else "no workloads registered: no clocks to compare", hosts=hosts)

    def off_by(host: dict[str, Any]) -> float:
        # Only what the round trip cannot explain.
        offset = abs(float(host["clockOffsetSeconds"]))
        return max(offset - float(host.get("uncertaintySeconds") or 0), 0.0)

    far = [h for h in measured if off_by(h) > HOST_CLOCK_FAIL_S]
    off = [h for h in measured if off_by(h) > CLOCK_OFFSET_MAX_S]
    if off:
        text = "; ".join(f"{_host_name(h)}'s clock is {h['clockOffsetSeconds']:+.1f}s from the "
                         f"control plane's ({', '.join(h['workloads'][:3])})" for h in off)
        if far:
            return Outcome.failed(text + ": certificates may be refused there as not yet "
                                  "valid or expired", hosts=hosts)
        return Outcome.warning(text, hosts=hosts)
    return Outcome.ok(f"{len(measured)} host(s) within {CLOCK_OFFSET_MAX_S:g}s of the "
                      "control plane's clock", hosts=hosts)


def etcd_quorum(api: CheckApi) -> Outcome:
    report = api.replicas()
    if report.get("store") != "etcd":
        return Outcome.ok("the store is SQLite: no etcd", **report)
    etcd = report.get("etcd", {})
    endpoints = etcd.get("endpoints", [])
    healthy = [e for e in endpoints if e.get("healthy")]
    members = len(etcd.get("members", [])) or len(endpoints)
    down = "; ".join(f"{e['endpoint']}: {e.get('why', 'unhealthy')}"
                     for e in endpoints if not e.get("healthy"))
    if len(healthy) <= members // 2:
        return Outcome.failed(f"etcd has no quorum: {len(healthy)} of {members} members "
                              f"healthy ({down})", **report)
    if down:
        return Outcome.warning(f"etcd keeps quorum with {len(healthy)} of {members} members "
                               f"healthy; down: {down}", **report)
    return Outcome.ok(f"etcd: {len(healthy)} of {members} members healthy", **report)


# -- identity ----------------------------------------------------------------------------------

def _authorities(api: CheckApi) -> tuple[list[x509.Certificate], x509.Certificate]:
    data = api.identity()
    anchors = [c for a in data["anchors"] for c in certs.load(a["pem"])]
    issuer = certs.load(data["issuer"]["pem"])[0]
    return anchors, issuer


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def anchors_valid(api: CheckApi) -> Outcome:
    anchors, _ = _authorities(api)
    return evaluate_anchors(anchors, _now())


def evaluate_anchors(anchors: list[x509.Certificate], now: dt.datetime) -> Outcome:
    if not anchors:
        return Outcome.failed("the trust bundle is empty")
    problems = []
    for anchor in anchors:
        problems += [p for p in (certs.validity_problem(anchor, now), certs.ca_problem(anchor))
                     if p]
        if not certs.signed_by(anchor, anchor):
            problems.append(f"{certs.name(anchor)} is not self-signed (its signature does not "
                            f"verify with its own key)")
    names = [certs.name(a) for a in anchors]
    if problems:
        return Outcome.failed("\n".join(problems), anchors=names)
    return Outcome.ok(", ".join(names), anchors=names)


def issuer_valid(api: CheckApi) -> Outcome:
    _, issuer = _authorities(api)
    now = _now()
    problems = [p for p in (certs.validity_problem(issuer, now), certs.ca_problem(issuer)) if p]
    if problems:
        return Outcome.failed("\n".join(problems), issuer=certs.name(issuer))
    return Outcome.ok(certs.name(issuer), issuer=certs.name(issuer))


def issuer_signed(api: CheckApi) -> Outcome:
    anchors, issuer = _authorities(api)
    return evaluate_issuer_signed(issuer, anchors)


def evaluate_issuer_signed(issuer: x509.Certificate, anchors: list[x509.Certificate]
                           ) -> Outcome:
    signer = certs.signer_among(issuer, anchors)
    if signer is None:
        return Outcome.failed(f"the issuer {certs.name(issuer)} is not signed by any trust "
                              f"anchor in the bundle",
                              issuer=certs.name(issuer), anchors=[certs.name(a) for a in anchors])
    return Outcome.ok(f"{certs.name(issuer)} is signed by {certs.name(signer)}",
                      issuer=certs.name(issuer), signer=certs.name(signer))


def algorithms(api: CheckApi) -> Outcome:
    anchors, issuer = _authorities(api)
    return evaluate_algorithms([*anchors, issuer])


def evaluate_algorithms(authorities: list[x509.Certificate]) -> Outcome:
    used = {certs.name(c): certs.algorithm(c) for c in authorities}
    problems = [p for p in (certs.algorithm_problem(c) for c in authorities) if p]
    if problems:
        return Outcome.failed("\n".join(problems), algorithms=used)
    return Outcome.ok(", ".join(sorted(set(used.values()))), algorithms=used)


def expiry(api: CheckApi) -> Outcome:
    anchors, issuer = _authorities(api)
    return evaluate_expiry([*anchors, issuer], _now(), CA_MIN_DAYS)


def evaluate_expiry(authorities: list[x509.Certificate], now: dt.datetime, min_days: float
                    ) -> Outcome:
    left = {certs.name(c): round(certs.days_left(c, now), 1) for c in authorities}
    warnings = [w for w in (certs.expiry_warning(c, now, min_days) for c in authorities) if w]
    if warnings:
        return Outcome.warning("\n".join(warnings), daysLeft=left)
    return Outcome.ok(f"the first expires in {min(left.values()):.0f} days", daysLeft=left)


JOIN_EXPIRED_RECENTLY_S = 86400.0  # an unused token that expired within a day is reported
JOIN_EXPIRES_SOON_S = 600.0


def join_tokens(api: CheckApi) -> Outcome:
    return evaluate_join_tokens(api.join_tokens(), time.time())


def evaluate_join_tokens(tokens: list[dict[str, Any]], now: float) -> Outcome:
    """Hosts that were meant to join and did not: a token that expired unused within the
    last day (its host, started late, is refused), and one about to."""
    lapsed = [t for t in tokens if t["state"] == "expired" and not t.get("usedAt")
              and now - float(t["expiresAt"]) < JOIN_EXPIRED_RECENTLY_S]
    closing = [t for t in tokens if t["state"] == "valid"
               and float(t["expiresAt"]) - now < JOIN_EXPIRES_SOON_S]
    valid = sum(1 for t in tokens if t["state"] == "valid")
    lines = [f"join token {t['id']} for {t['service']}.{t['namespace']} expired unused "
             f"{format_duration(now - float(t['expiresAt']))} ago: the host it was made for never "
             "joined, and is refused if it tries now" for t in lapsed]
    lines += [f"join token {t['id']} for {t['service']}.{t['namespace']} expires in "
              f"{format_duration(float(t['expiresAt']) - now)}, unused" for t in closing]
    if lines:
        return Outcome.warning("\n".join(lines), expiredUnused=[t["id"] for t in lapsed],
                               expiringSoon=[t["id"] for t in closing])
    if not tokens:
        return Outcome.ok("no join tokens (no host was invited)")
    return Outcome.ok(f"{valid} valid, none expired unused in the last day")
