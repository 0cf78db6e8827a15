"""`tulle stat`, `tulle routes` and `tulle edges`: golden metrics from the control plane's
windows (the last 15 minutes of every sidecar's reports)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from enum import StrEnum
from typing import Annotated, Any

import typer

from tulle.cli.output import WatchOption, table, watch
from tulle.client import ApiClient
from tulle.errors import UsageError
from tulle.model.durations import parse_duration


class View(StrEnum):
    TABLE = "table"
    WIDE = "wide"
    JSON = "json"


ViewOption = Annotated[View, typer.Option("-o", "--output", help="table, wide or json")]
WindowOption = Annotated[str, typer.Option("--window",
                                           help="How far back: 1s to 15m, e.g. 30s, 5m")]
NamespaceOption = Annotated[str | None, typer.Option("-n", "--namespace",
                                                     help="Only this namespace")]


def register(app: typer.Typer) -> None:
    app.command(name="stat")(stat)
    app.command(name="routes")(routes)
    app.command(name="edges")(edges)


def _seconds(window: str) -> float:
    seconds = parse_duration(window)
    if seconds is None or not 1 <= seconds <= 900:
        raise UsageError(f"--window must be a duration from 1s to 15m, got {window!r}",
                         hint="for example --window 30s or --window 5m")
    return seconds


def _get(ctx: typer.Context, path: str, **query: str | float | None) -> dict[str, Any]:
    params = "&".join(f"{k}={v}" for k, v in query.items() if v not in (None, ""))
    data: dict[str, Any] = ApiClient.from_state(ctx.obj.paths).get(f"{path}?{params}")
    return data


def _text(data: dict[str, Any], view: View, render: Any) -> str:
    if view is View.JSON:
        return json.dumps(data, indent=2) + "\n"
    missing = "".join(f"warning: replica {m['replica']} did not answer ({m['why']}): the "
                      "reports of the agents connected to it are missing from these figures\n"
                      for m in data.get("replicasMissing", ()))
    return missing + str(render(data, view is View.WIDE)) + "\n"


def _show(fetch: Callable[[], dict[str, Any]], view: View, render: Any,
          keep_watching: bool) -> None:
    """Print once, or (``--watch``) again whenever the figures change."""
    if keep_watching:
        watch(lambda: _text(fetch(), view, render))
    else:
        sys.stdout.write(_text(fetch(), view, render))


def stat(
    ctx: typer.Context,
    kind: Annotated[str, typer.Argument(help="services (default) or workloads")] = "services",
    name: Annotated[str | None, typer.Argument(help="One service or workload")] = None,
    namespace: NamespaceOption = None,
    window: WindowOption = "1m",
    output: ViewOption = View.TABLE,
    watch_: WatchOption = False,
) -> None:
    """Golden metrics: request rate, success rate, latency percentiles, traffic."""
    kinds = {"services": "services", "service": "services", "svc": "services",
             "workloads": "workloads", "workload": "workloads", "wl": "workloads"}
    if kind not in kinds:
        raise UsageError(f"cannot show stats for {kind!r}", hint="tulle stat services|workloads")
    kind = kinds[kind]
    seconds = _seconds(window)
    _show(lambda: _get(ctx, f"/v1/telemetry/{kind}", window=seconds, namespace=namespace,
                       name=name), output, _stat_table(kind), watch_)


def routes(
    ctx: typer.Context,
    service: Annotated[str, typer.Argument(help="The service whose routes to show")],
    namespace: Annotated[str, typer.Option("-n", "--namespace")] = "default",
    window: WindowOption = "1m",
    output: ViewOption = View.TABLE,
    watch_: WatchOption = False,
) -> None:
    """Per-route metrics for every rule of the service's HTTPRoutes, as its callers saw them."""
    seconds = _seconds(window)
    _show(lambda: _get(ctx, "/v1/telemetry/routes", window=seconds, namespace=namespace,
                       name=service), output, _routes_table, watch_)


def edges(
    ctx: typer.Context,
    namespace: NamespaceOption = None,
    window: WindowOption = "1m",
    output: ViewOption = View.TABLE,
    watch_: WatchOption = False,
) -> None:
    """Who talks to whom: identities, mTLS, rate and success rate of every edge."""
    seconds = _seconds(window)
    _show(lambda: _get(ctx, "/v1/telemetry/edges", window=seconds, namespace=namespace),
          output, _edges_table, watch_)


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.2f}%"


def _ms(value: float | None) -> str:
    return "-" if value is None else (f"{value:.0f}ms" if value >= 10 else f"{value:.1f}ms")


def _golden(row: dict[str, Any]) -> list[str]:
    latency = row["latencyMs"]
    return [_percent(row["successRate"]), f"{row['rps']:.2f}", _ms(latency["p50"]),
            _ms(latency["p95"]), _ms(latency["p99"])]


GOLDEN = ("SUCCESS", "RPS", "P50", "P95", "P99")


def _errors(row: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in row.get("errors", {}).items()) or "-"


BY_CALLERS = ("* as the callers saw it: requests that failed before reaching an instance "
              "(no healthy instance, connect failures) count against the service called")


def _stat_table(kind: str) -> Any:
    def render(data: dict[str, Any], wide: bool) -> str:
        rows = []
        headers: tuple[str, ...]
        notes = []
        if kind == "services":
            headers = ("NAMESPACE", "SERVICE", "INSTANCES", *GOLDEN, "CONNECTIONS")
            for row in data["services"]:
                marked = row["name"] + ("*" if row.get("seenBy") == "callers" else "")
                rows.append([row["namespace"], marked, row["instances"], *_golden(row),
                             row["connections"]])
            if any(row.get("seenBy") == "callers" for row in data["services"]):
                notes.append(BY_CALLERS)
        else:
            headers = ("NAMESPACE", "WORKLOAD", "SERVICE", *GOLDEN, "CONNECTIONS", "STATE")
            for row in data["workloads"]:
                rows.append([row["namespace"], row["name"], row["service"], *_golden(row),
                             row["connections"], row.get("state", "-")])
        if wide:
            key = "services" if kind == "services" else "workloads"
            headers = (*headers, "REQUESTS", "BYTES IN/S", "BYTES OUT/S")
            for cells, row in zip(rows, data[key], strict=True):
                cells += [row["requests"], row["bytesInPerSecond"], row["bytesOutPerSecond"]]
            if kind == "services":
                headers = (*headers, "CALLERS' ERRORS")
                for cells, row in zip(rows, data[key], strict=True):
                    cells.append(_errors(row))
        sections = [f"(last {data['windowSeconds']:g}s)", table(headers, rows), *notes]
        if kind == "services":
            sections += _connections_section(data["services"])
            sections += _authorization_section(data["services"])
            sections += _rate_limit_section(data["services"])
            sections += _route_trial_section(data["services"])
            sections += _egress_authorization_section(data.get("egressAuthorization", ()))
        return "\n".join(sections)
    return render


def _size(count: int) -> str:
    if count < 1024:
        return f"{count}B"
    value = count / 1024
    for unit in ("KiB", "MiB"):
        if value < 1024:
            return f"{value:.1f}{unit}"
        value /= 1024
    return f"{value:.1f}GiB"


def _seconds_text(value: float | None) -> str:
    return "-" if value is None else (f"{value:.1f}s" if value < 60 else f"{value / 60:.1f}m")


def _connections_section(services: list[dict[str, Any]]) -> list[str]:
    """Connection figures, for what requests do not describe: tcp services (connections
    accepted from callers) and upgraded connections (WebSocket) of HTTP services."""
    rows = []
    for row in services:
        l4, upgraded = row.get("l4"), row.get("upgrades")
        if row.get("protocol") == "tcp" and l4 is not None:
            rows.append([row["namespace"], row["name"], "tcp", l4["opened"],
                         row["connections"], _size(l4["bytesIn"]), _size(l4["bytesOut"]),
                         "-", l4["connectFailures"]])
        if upgraded and (upgraded["opened"] or upgraded["active"]):
            rows.append([row["namespace"], row["name"], "upgraded (WebSocket)",
                         upgraded["opened"], upgraded["active"], _size(upgraded["bytesIn"]),
                         _size(upgraded["bytesOut"]),
                         _seconds_text(upgraded["durationSeconds"]["mean"]), "-"])
    if not rows:
        return []
    headers = ("NAMESPACE", "SERVICE", "CONNECTIONS", "OPENED", "ACTIVE", "BYTES IN",
               "BYTES OUT", "MEAN DURATION", "CONNECT FAILURES")
    return ["", table(headers, rows)]


def _authorization_section(services: list[dict[str, Any]]) -> list[str]:
    """What AuthorizationPolicies denied, and what DryRun ones would deny, per RBAC policy:
    a DENY rule, "no-ALLOW-rule-matched" (the service's ALLOW policies) or a default deny."""
    rows = []
    for row in services:
        for item in (row.get("authorization") or {}).get("policies", ()):
            rows.append([row["namespace"], row["name"], item["policy"], item["denied"],
                         item["wouldDeny"]])
    if not rows:
        return []
    headers = ("NAMESPACE", "SERVICE", "AUTHORIZATION (POLICY:RULE)", "DENIED",
               "WOULD DENY (DRY RUN)")
    return ["", table(headers, rows)]


def _egress_authorization_section(items: Any) -> list[str]:
    """Calls to ExternalServices that AuthorizationPolicies denied, and would deny, in the
    callers' own sidecars: per host and RBAC policy, with the callers."""
    rows = [[item["host"], item["policy"], item["denied"], item["wouldDeny"],
             ", ".join(item["callers"])] for item in items]
    if not rows:
        return []
    return ["", table(("EXTERNAL HOST", "AUTHORIZATION (POLICY:RULE)", "DENIED",
                       "WOULD DENY (DRY RUN)", "CALLERS"), rows)]


def _route_trial_section(services: list[dict[str, Any]]) -> list[str]:
    """Services with a DryRun HTTPRoute: where their callers' requests would have gone, by
    the rule that would have taken them, and how many would have gone elsewhere."""
    rows = []
    for row in services:
        for item in (row.get("routeTrial") or {}).get("rules", ()):
            rule = f"{item['route']}:{item['rule']}" if item["route"] else "(no rule: 404)"
            where = ", ".join(f"{host} {n}" for host, n in
                              sorted(item["to"].items(), key=lambda pair: -pair[1]))
            rows.append([row["namespace"], row["name"], rule, item["requests"], where,
                         item["moved"]])
    if not rows:
        return []
    notes = [f"{row['namespace']}/{row['name']}: {trial['notEvaluated']} more requests were "
             "not evaluated (past the control plane's budget): the counts above "
             "are a sample" for row in services
             if (trial := row.get("routeTrial")) and trial.get("notEvaluated")]
    return ["", table(("NAMESPACE", "SERVICE", "DRY-RUN ROUTE WOULD MATCH (ROUTE:RULE)",
                       "REQUESTS", "WOULD GO TO", "MOVED"), rows), *notes]


def _rate_limit_section(services: list[dict[str, Any]]) -> list[str]:
    """Service-wide rate limits at work: requests refused (429), and those a dry-run limit
    would refuse."""
    rows = [[row["namespace"], row["name"], limits["limited"], limits["wouldLimit"]]
            for row in services if (limits := row.get("rateLimit"))
            and (limits["limited"] or limits["wouldLimit"])]
    if not rows:
        return []
    return ["", table(("NAMESPACE", "SERVICE", "RATE LIMITED (429)", "WOULD LIMIT (DRY RUN)"),
                      rows)]


def _routes_table(data: dict[str, Any], wide: bool) -> str:
    headers: tuple[str, ...] = ("ROUTE", "RULE", *GOLDEN)
    rows = [[r["route"], r["rule"], *_golden(r)] for r in data["routes"]]
    if any(r.get("wouldLimit") for r in data["routes"]):  # a rule's rate limit in dry run
        headers = (*headers, "WOULD LIMIT (DRY RUN)")
        for cells, row in zip(rows, data["routes"], strict=True):
            cells.append(row["wouldLimit"])
    if wide:
        headers = (*headers, "REQUESTS", "RETRIES", "TIMEOUTS", "ERRORS", "MATCHES")
        for cells, row in zip(rows, data["routes"], strict=True):
            cells += [row["requests"], row["retries"], row["timeouts"], _errors(row),
                      row["matches"]]
    return (f"{data['service']}.{data['namespace']} (last {data['windowSeconds']:g}s)\n"
            + table(headers, rows))


def _destination(dst: dict[str, Any]) -> str:
    if dst.get("passthrough"):
        return "(any host: ALLOW_ANY)"
    if dst.get("refused"):  # the host as the application named it, port included
        return f"{dst['host']} (refused: not in the registry)"
    if dst.get("external"):
        return f"{dst['host']}:{dst['port']} (external)"
    return f"{dst['service']}.{dst['namespace']}"


def _edges_table(data: dict[str, Any], wide: bool) -> str:
    headers: tuple[str, ...] = ("SOURCE", "DESTINATION", "MTLS", *GOLDEN)
    rows = []
    for edge in data["edges"]:
        src, dst = edge["source"], edge["destination"]
        source = "(outside the mesh)" if src.get("outsideMesh") else \
            f"{src['workload']}.{src['namespace']}"
        destination = _destination(dst)
        secured = "yes" if edge["mtls"] else "no"
        if not edge.get("connected", True):
            secured = "-"  # every call failed before a connection: no hop to judge
        cells = [source, destination, secured, *_golden(edge)]
        if wide:
            cells += [src.get("identity") or "-", ", ".join(dst.get("identities") or []) or "-",
                      _errors(edge)]
        rows.append(cells)
    if wide:
        headers = (*headers, "SOURCE IDENTITY", "DESTINATION IDENTITIES", "ERRORS")
    return f"(last {data['windowSeconds']:g}s)\n" + table(headers, rows)
