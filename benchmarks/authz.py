"""The cost of AuthorizationPolicies: one tulle sidecar pair under the same open-loop load,
with no policy, with 10 and with 100 ALLOW rules on the called service.

Only the last rule matches the load's caller, so the called sidecar's RBAC filter evaluates
every rule for every request (an ALLOW policy is "deny when none of the rules matches").
"10 rules" and "100 rules" each name another caller and a path prefix; "100 caller rules"
name only another caller, so each is tested on the caller's identity. The variants take
turns on one pair (a variant is an apply and a push, then a warm-up), so that the machine's
other load spreads over all of them; latency is shown against no policy measured in the same
run. Target: at most 5 % more p50 and p99 with 100 rules.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import yaml

from benchmarks import paths
from benchmarks.harness import Figure, bench_mesh
from benchmarks.openloop import CONNECTIONS, LoadResult, build, generate
from benchmarks.slices import Cores, Results, Settings, take_slice

VARIANTS = {"none": 0, "10 rules": 10, "100 rules": 100, "100 caller rules": 100}
CALLERS_ONLY = "100 caller rules"
TARGET_PERCENT = 5.0
TARGET_RATE = 1000
QUICK = Settings(rates=(200,), rounds=1, slice_s=2.5, warmup_s=0.5, grpc_rates=())
FULL = Settings(rates=(1000,), rounds=4, slice_s=10.0, warmup_s=2.0, grpc_rates=())


PER_POLICY = 50  # a policy holds at most 64 rules: 100 rules are two ALLOW policies


def policies(rules: int, callers_only: bool = False) -> dict[str, str]:
    """``rules`` ALLOW rules on bench-server, by policy name; only the very last rule is
    bench-client's. ``callers_only``: the others name a caller and nothing else."""
    items: list[dict[str, object]] = [
        {"name": f"r{i}", "from": [{"service": f"caller-{i}"}]} if callers_only else
        {"name": f"r{i}", "from": [{"service": f"caller-{i}"}],
         "to": [{"paths": [{"type": "PathPrefix", "value": f"/area-{i}"}],
                 "methods": ["GET", "POST"]}]} for i in range(rules - 1)]
    items.append({"name": "bench", "from": [{"service": "bench-client"}]})
    out = {}
    for index in range(0, len(items), PER_POLICY):
        name = f"bench-authz-{index // PER_POLICY}"
        out[name] = yaml.safe_dump({
            "apiVersion": "tulle.io/v1alpha1", "kind": "AuthorizationPolicy",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"targetRef": {"kind": "Service", "name": "bench-server"},
                     "action": "ALLOW", "rules": items[index:index + PER_POLICY]}})
    return out


def measure(settings: Settings) -> Results:
    cores = Cores.of_this_process()
    results = Results()
    own = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cores.load)
    try:
        with tempfile.TemporaryDirectory(prefix="tulle-authz-") as tmp, bench_mesh() as mesh:
            tools = build(Path(tmp))
            control_plane = mesh.control_plane()
            policy_file = Path(tmp) / "policy.yaml"
            names = list(VARIANTS)
            with paths.tulle_pair(mesh, tools, cores.data, telemetry=True) as path:
                for turn in range(settings.rounds):
                    for name in names[turn % len(names):] + names[:turn % len(names)]:
                        wanted = (policies(VARIANTS[name], name == CALLERS_ONLY)
                                  if VARIANTS[name] else {})
                        if wanted:
                            policy_file.write_text("---\n".join(wanted.values()))
                            mesh.cli("apply", "-f", str(policy_file))
                        listed = mesh.cli("get", "authorizationpolicies")
                        for stale in ("bench-authz-0", "bench-authz-1"):
                            if stale not in wanted and stale in listed:
                                mesh.cli("delete", "authorizationpolicy", stale)
                        mesh.api.get("/v1/xds/sync", {"timeout": 30})

                        def load(rate: float, seconds: float) -> LoadResult:
                            return generate(tools, path.port, rate, seconds, cores.load)

                        for rate in settings.rates:
                            load(rate, settings.warmup_s)
                            taken = take_slice(path, control_plane, load, rate,
                                               settings.slice_s)
                            if (problem := taken.load.problem()) is not None:
                                raise RuntimeError(f"{name} at {rate} rps: {problem}")
                            results.slices.setdefault((name, rate), []).append(taken)
    finally:
        os.sched_setaffinity(0, own)
    return results


def run(quick: bool) -> tuple[list[Figure], str]:
    settings = QUICK if quick else FULL
    results = measure(settings)
    figures = []
    for rate in settings.rates:
        base = results.load("none", rate)
        for pct in (50.0, 99.0):
            floor = base.latency(pct)
            at_target = rate == TARGET_RATE
            figures.append(Figure(f"{rate} rps p{pct:g}: no policy", floor, "ms"))
            for name in ("10 rules", "100 rules", CALLERS_ONLY):
                value = results.load(name, rate).latency(pct)
                figures.append(Figure(f"{rate} rps p{pct:g}: {name}", value, "ms", floor))
                figures.append(Figure(
                    f"{rate} rps p{pct:g}: {name} over none", 100 * (value / floor - 1), "%",
                    target=TARGET_PERCENT if at_target and name != "10 rules" else None))
    return figures, (
        f"one tulle pair, open loop, {CONNECTIONS} keep-alive connections, 1 KB responses; "
        f"per variant and rate {settings.rounds} x {settings.slice_s:g} s after "
        f"{settings.warmup_s:g} s of warm-up, variants taking turns; baseline: no policy, "
        "same run; every rule evaluated per request (the matching one is last)")
