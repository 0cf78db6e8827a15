"""The live side of `tulle analyze`: the analyzers over the stored resources, the registry's
workloads and a telemetry window, optionally with documents laid over the store as if applied
(so a change can be checked against the running mesh before it is applied). Suppressions and
the failure threshold are the CLI's business."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from tulle.model.parse import Document
from tulle.model.resource import Resource
from tulle.model.workload import Workload
from tulle.telemetry.query import NodeInfo
from tulle.telemetry.windows import Window

DEFAULT_WINDOW_S = 60.0


class AnalysisService:
    def __init__(self, resources: Callable[[], Iterable[Resource]],
                 workloads: Callable[[], Iterable[Workload]],
                 window: Callable[[float], Window],
                 nodes: Callable[[], dict[str, NodeInfo]]) -> None:
        self._resources = resources
        self._workloads = workloads
        self._window = window
        self._nodes = nodes

    def analyze(self, documents: Sequence[Document], window_s: float) -> dict[str, Any]:
        from tulle.analysis.run import run_analysis
        from tulle.analysis.traffic import Traffic

        traffic = Traffic(self._window(window_s), self._nodes())
        result = run_analysis(list(documents), list(self._resources()),
                              list(self._workloads()), traffic)
        return {"mode": "files+live" if documents else "live", "windowSeconds": window_s,
                **result.to_dict()}
