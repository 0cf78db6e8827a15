"""In-process cost of an apply at 1,000 services: `python -m benchmarks.apply_cost [ROUNDS]`.

The synthetic benchmark's mesh (1,000 Services, 1,500 workloads with certificates), a
``ResourceService`` with the control plane's precheck over SQLite in a temporary directory;
then ROUNDS (default 6) applies of the HTTPRoute whose weights flip, as the synthetic
benchmark's route change does. Prints each apply's time and its parts: the analyzers'
warnings, the precheck (building the proposed mesh, translating it). No timing is asserted.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.unit.xds.meshes import service

from benchmarks.push_replay import _identity, _route, _service, _workloads
from tulle.controlplane import configpath
from tulle.controlplane.configpath import Precheck
from tulle.controlplane.services.resources import ResourceService
from tulle.controlplane.services.tap import PRECHECK_LOGGING
from tulle.model.parse import Document
from tulle.store.sqlite import SqliteStore

SERVICES = 1000


def main(rounds: int) -> None:
    workloads = _workloads()
    identity = _identity(workloads)
    parts: dict[str, list[float]] = {}

    def timed(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                parts.setdefault(name, []).append((time.perf_counter() - started) * 1000)
        return run

    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(Path(tmp) / "store.db")
        precheck = Precheck(lambda: workloads, lambda: identity, PRECHECK_LOGGING)
        service_ = ResourceService(store, lambda: workloads, lambda: None, precheck=precheck)
        service_.apply([Document("bench", service(_service(i))) for i in range(SERVICES)]
                       + [Document("bench", _route(10))])
        service_._warnings = timed("warnings", service_._warnings)  # type: ignore[assignment]
        configpath.build_mesh = timed(  # type: ignore[attr-defined]
            "precheck: build the mesh", configpath.build_mesh)  # type: ignore[attr-defined]
        precheck._compiler.compile = timed(  # type: ignore[method-assign]
            "precheck: translate", precheck._compiler.compile)
        weight = 10
        for _ in range(rounds):
            weight = 100 - weight
            timed("apply", service_.apply)([Document("bench", _route(weight))])
        store.close()
    for name, values in parts.items():
        shown = values
        if name == "precheck: translate":  # one compile per shape: add them up per apply
            per = len(values) // rounds
            shown = [sum(values[i:i + per]) for i in range(0, len(values), per)]
        print(f"{name:26s}", " ".join(f"{v:6.1f}" for v in shown), "ms")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 6)
