"""Diagnosis rules: a DryRun HTTPRoute that would fail requests if it were promoted (TUL1031).

The evidence is where the control plane decided each of the callers' requests would have gone
with the service's DryRun HTTPRoutes in force (TRIAL series, whatif/trials.py): a 404 where no
rule would match, a redirect or a 500 where a rule answers itself, a backend with no ready
instance, and requests it could not decide (the routing matches on a header whose value is
redacted from access logs). A trial that only moves requests to ready backends is what a
canary is for, and is no finding: `tulle stat` shows it.
"""

from __future__ import annotations

from collections.abc import Iterator

from tulle.diagnose.evidence import Evidence
from tulle.diagnose.model import Finding, Scope, Severity, resource_subject, service_subject
from tulle.model.meta import ServiceRef
from tulle.model.route_trials import NO_BACKEND, NOT_FOUND, UNDECIDED
from tulle.telemetry.query import route_trial

_FAILS = {NOT_FOUND: "404 (no rule would match)", NO_BACKEND: "500 (no backend with weight)"}


def _service(host: str) -> ServiceRef:
    name, _, namespace = host.partition(".")
    return ServiceRef(namespace, name)


def would_fail(evidence: Evidence, scope: Scope) -> Iterator[Finding]:
    """TUL1031: promoting a dry-run HTTPRoute would fail requests that are answered today."""
    for ref, trial in sorted(evidence.mesh.route_trials.items()):
        seen = route_trial(evidence.window, ref.host)
        if seen is None:
            continue
        failing: dict[str, int] = {}
        unready: dict[str, int] = {}
        undecided = 0
        for item in seen["rules"]:
            for where, n in item["to"].items():
                if where in _FAILS:
                    failing[where] = failing.get(where, 0) + n
                elif where == UNDECIDED:
                    undecided += n
                elif "." in where and not evidence.mesh.endpoints_of(_service(where)):
                    unready[where] = unready.get(where, 0) + n
        harmed = sum(failing.values()) + sum(unready.values())
        if not harmed and not undecided:
            continue
        names = ", ".join(f"{k.namespace}/{k.name}" for k in trial.trying)
        lines = [f"{seen['requests']} requests to {ref.host} in the window; with {names} in "
                 f"force {seen['moved']} would have gone elsewhere than they went"]
        lines += [f"{n} would get {_FAILS[where]}" for where, n in sorted(failing.items())]
        lines += [f"{n} would go to {host}, which has no ready instance (503)"
                  for host, n in sorted(unready.items())]
        if undecided:
            lines.append(f"{undecided} could not be decided: the routing matches on a header "
                         "whose value access logs redact (the Mesh's spec.accessLog)")
        cause = (f"Promoting {names} would fail {harmed} of the {seen['requests']} requests to "
                 f"{ref.host} in the window (dry run: callers still route as before)."
                 if harmed else
                 f"Where {names} would send requests to {ref.host} cannot be told for "
                 f"{undecided} of them.")
        fix = ("add a rule for the paths that would get 404 (or a last rule without matches), "
               "give every backend ready instances, then watch `tulle stat` again before "
               "`tulle policy promote`" if harmed else
               "check the rules that match on redacted headers by hand (`tulle what-if`), or "
               "match on a header that is not redacted")
        yield Finding(
            "TUL1031", Severity.WARNING, min(70.0, 30.0 + harmed), resource_subject(
                trial.trying[0]) if trial.trying else service_subject(ref),
            cause, tuple(lines), fix,
            related=(service_subject(ref), *(resource_subject(k) for k in trial.trying[1:])))


RULES = (would_fail,)
