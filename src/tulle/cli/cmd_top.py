"""`tulle top SERVICE`: the busiest paths of a service, live, from a tap session.

Each request is counted once: where it reached an instance of the service (its inbound side),
or, when it never got there (a circuit breaker, an injected fault, no healthy instance), where
the caller's sidecar answered it.
"""

from __future__ import annotations

import json
import queue
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any

import typer

from tulle.cli.output import Format, OutputOption, table
from tulle.client import ApiClient
from tulle.errors import UsageError
from tulle.model import grpc_status
from tulle.model.durations import parse_duration

ROWS = 20


@dataclass
class PathStats:
    source: str
    method: str
    path: str
    count: int = 0
    failures: int = 0
    latencies: list[float] = field(default_factory=list)
    last_status: int | None = None
    last_seen: float = 0.0

    def to_dict(self, seconds: float) -> dict[str, Any]:
        ordered = sorted(self.latencies)
        return {"source": self.source, "method": self.method, "path": self.path,
                "count": self.count, "rps": round(self.count / seconds, 3),
                "successRate": round(1 - self.failures / self.count, 4),
                "latencyMs": {"p50": _rank(ordered, 0.5), "max": ordered[-1] if ordered
                              else None},
                "lastStatus": self.last_status}


def _rank(ordered: list[float], q: float) -> float | None:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else None


class Top:
    """What the tap stream has shown so far, by (source, method, path)."""

    def __init__(self) -> None:
        self.paths: dict[tuple[str, str, str], PathStats] = {}
        self.started = time.monotonic()

    def add(self, event: dict[str, Any]) -> None:
        inbound = event.get("direction") == "inbound"
        if not inbound and event.get("destination"):
            return  # it reached an instance: counted on the inbound side
        path = str(event.get("path") or "-").partition("?")[0]
        source = str(event.get("source") or "-")
        key = (source, str(event.get("method") or "-"), path)
        stats = self.paths.setdefault(key, PathStats(*key))
        stats.count += 1
        status = event.get("status")
        stats.last_status = status if isinstance(status, int) else None
        # A gRPC call fails by its grpc-status, inside an HTTP 200.
        if (not isinstance(status, int) or status >= 500
                or grpc_status.failed(event.get("grpcStatus"))):
            stats.failures += 1
        if isinstance(event.get("latencyMs"), int | float):
            stats.latencies.append(float(event["latencyMs"]))
        stats.last_seen = time.monotonic()

    def snapshot(self) -> dict[str, Any]:
        seconds = max(1e-3, time.monotonic() - self.started)
        busiest = sorted(self.paths.values(), key=lambda s: (-s.count, s.path))[:ROWS]
        return {"seconds": round(seconds, 1), "paths": [s.to_dict(seconds) for s in busiest]}


def register(app: typer.Typer) -> None:
    app.command(name="top")(top)


def top(
    ctx: typer.Context,
    service: Annotated[str, typer.Argument(help="The service to watch")],
    namespace: Annotated[str, typer.Option("-n", "--namespace")] = "default",
    refresh: Annotated[str, typer.Option(help="How often to redraw, e.g. 2s")] = "2s",
    iterations: Annotated[int | None, typer.Option(
        help="Stop after this many refreshes (default: until Ctrl-C)")] = None,
    output: OutputOption = Format.TABLE,
) -> None:
    """The busiest paths of a service, live: requests, success rate, latency."""
    every = parse_duration(refresh)
    if every is None or every < 0.2:
        raise UsageError(f"--refresh must be a duration of at least 200ms, got {refresh!r}",
                         hint="for example --refresh 2s")
    if output is Format.YAML:
        raise UsageError("top prints a table or JSON", hint="use -o table or -o json")
    client = ApiClient.from_state(ctx.obj.paths)
    events: queue.Queue[dict[str, Any] | None] = queue.Queue()
    stream = client.stream("/v1/tap", {"target": f"service/{service}",
                                       "namespace": namespace})
    reader = threading.Thread(target=_pump, args=(stream, events), daemon=True)
    reader.start()
    state = Top()
    attached = False
    shown = 0
    try:
        deadline = time.monotonic() + every
        while iterations is None or shown < iterations:
            try:
                event = events.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                event = {}
            if event is None:
                break  # the stream ended (the control plane went away, or an error)
            if "request" in event:
                state.add(event["request"])
            elif "attached" in event:
                target = event["attached"]["target"]
                print(f"tapping {target['kind']} {target['namespace']}/{target['name']}; "
                      f"Ctrl-C to stop", file=sys.stderr, flush=True)
                # Count from the moment every sidecar logs, and show the first figures after
                # a whole refresh: a rate over a fraction of a second is noise.
                state = Top()
                attached = True
                deadline = time.monotonic() + every
            if time.monotonic() >= deadline:
                if attached:
                    _draw(service, namespace, state.snapshot(), output)
                else:
                    _attaching(service, namespace, output)
                shown += 1
                deadline = time.monotonic() + every
    except KeyboardInterrupt:
        pass  # leaving closes the stream, which detaches the tap


def _pump(stream: Iterator[dict[str, Any]], events: queue.Queue[dict[str, Any] | None]
          ) -> None:
    try:
        for message in stream:
            events.put(message)
    except Exception as exc:
        print(f"the tap stream ended: {exc}", file=sys.stderr)
    finally:
        events.put(None)


def _attaching(service: str, namespace: str, output: Format) -> None:
    """A frame before the sidecars log: say so, rather than an empty table."""
    if output is Format.JSON:
        print(json.dumps({"attaching": True, "seconds": 0, "paths": []}), flush=True)
    else:
        print(f"{service}.{namespace}: attaching... (the sidecars start logging requests "
              "within one push)", flush=True)


def _draw(service: str, namespace: str, snapshot: dict[str, Any], output: Format) -> None:
    if output is Format.JSON:
        print(json.dumps(snapshot), flush=True)
        return
    rows = [(p["source"], p["method"], p["path"], p["count"], f"{p['rps']:.2f}",
             f"{p['successRate'] * 100:.1f}%", _ms(p["latencyMs"]["p50"]),
             _ms(p["latencyMs"]["max"]), p["lastStatus"]) for p in snapshot["paths"]]
    text = (f"{service}.{namespace}: busiest paths over the last {snapshot['seconds']:g}s "
            f"(Ctrl-C to stop)\n"
            + table(("SOURCE", "METHOD", "PATH", "COUNT", "RPS", "SUCCESS", "P50", "MAX",
                     "LAST"), rows))
    if sys.stdout.isatty():
        sys.stdout.write("\x1b[H\x1b[2J")  # redraw in place
    print(text + ("" if sys.stdout.isatty() else "\n"), flush=True)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}ms"
