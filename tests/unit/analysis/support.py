"""Run the analyzers over YAML (a fixture file or inline text), with hand-built workloads and
telemetry, and boil the result down to (code, resource) pairs for table tests."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

from tulle.analysis.engine import AnalysisResult
from tulle.analysis.run import run_analysis
from tulle.analysis.traffic import Traffic
from tulle.model.parse import Document
from tulle.model.workload import Workload
from tulle.telemetry.query import NodeInfo
from tulle.telemetry.schema import SeriesKey
from tulle.telemetry.windows import Window

FIXTURES = Path(__file__).resolve().parent / "fixtures"
Finding = tuple[str, str]  # (code, "Kind namespace/name")
Series = Mapping[tuple[str, SeriesKey], Mapping[str, int]]


def documents(text: str, source: str = "t.yaml") -> list[Document]:
    return [Document(f"{source}:{index}", body)
            for index, body in enumerate(yaml.safe_load_all(text), start=1) if body]


def fixture(name: str) -> str:
    return (FIXTURES / f"{name}.yaml").read_text()


def run(text: str, *, workloads: Sequence[Workload] | None = None,
        traffic: Traffic | None = None, stored: str = "") -> AnalysisResult:
    from tulle.analysis.run import parse_for_analysis

    base = parse_for_analysis(documents(stored, "stored.yaml")) if stored else ()
    return run_analysis(documents(text), base, workloads, traffic)


def findings(text: str, *, workloads: Sequence[Workload] | None = None,
             traffic: Traffic | None = None, stored: str = "") -> list[Finding]:
    result = run(text, workloads=workloads, traffic=traffic, stored=stored)
    return sorted((m.code, m.resource) for m in result.messages)


def node(name: str, service: str, namespace: str = "default") -> tuple[str, NodeInfo]:
    return f"{name}.{namespace}", NodeInfo(name, namespace, service, "")


def traffic(counters: Series, *, gauges: Series | None = None,
            nodes: Sequence[tuple[str, NodeInfo]] = (), seconds: float = 60.0) -> Traffic:
    window = Window(seconds, seconds, dict(counters), dict(gauges or {}), {})
    return Traffic(window, dict(nodes))


NO_TRAFFIC = traffic({})
