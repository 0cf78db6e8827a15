"""`python -m benchmarks [--quick] [--only NAME] [--json PATH]`."""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

from benchmarks import (
    authz,
    ca,
    convergence,
    dataplane,
    harness,
    multihost,
    startup,
    synthetic,
    telemetry,
    troubleshoot,
)
from benchmarks.harness import dump, report
from tulle import __version__

SUITE = {
    "startup": (startup.run, "Startup: `tulle up` and `tulle run` to ready"),
    "convergence": (convergence.run, "Convergence: one change to every proxy's ACK"),
    "synthetic": (synthetic.run, "Convergence at scale: synthetic ADS clients, 1,000 services"),
    "ca": (ca.run, "CA: signing throughput, and renewal to ACK"),
    "telemetry": (telemetry.run, "Telemetry: collection cost in the control plane"),
    "troubleshoot": (troubleshoot.run, "Troubleshooting: tulle check --proxy and tulle diagnose"),
    "dataplane": (dataplane.run, "Data-plane tax: latency, CPU and memory of a sidecar pair"),
    "authz": (authz.run, "Authorization: added latency with 10 and 100 rules"),
    "multihost": (multihost.run, "Replicas on etcd: a change across replicas, and failover"),
}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--quick", action="store_true", help="a seconds-long smoke version")
    parser.add_argument("--only", choices=sorted(SUITE), action="append")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--proxies", type=int, metavar="N",
                        help="synthetic: N proxies alone, with the N = 100 baseline")
    parser.add_argument("--xds-workers", type=int, metavar="N",
                        help="start the control planes with N xDS worker processes (0: none) "
                             "instead of the default")
    args = parser.parse_args()
    if args.xds_workers is not None:
        os.environ[harness.XDS_WORKERS_ENV] = str(args.xds_workers)
    print(f"tulle {__version__} benchmarks ({'quick' if args.quick else 'full'}) on "
          f"{platform.machine()}, {platform.python_implementation()} "
          f"{platform.python_version()}")
    results = []
    for name in args.only or SUITE:
        run, title = SUITE[name]
        if name == "synthetic" and args.proxies is not None:
            figures, notes = synthetic.run(args.quick, args.proxies)
        else:
            figures, notes = run(args.quick)
        results.append(report(title, figures, notes))
    if args.json:
        dump(results, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
