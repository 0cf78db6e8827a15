"""`tulle tap SERVICE|WORKLOAD`: watch individual requests live, as sidecars see them."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from tulle.cli.output import Format, OutputOption
from tulle.client import ApiClient
from tulle.errors import UsageError
from tulle.model import grpc_status, response_flags

COLUMNS = ("TIME", "SIDE", "SOURCE -> DESTINATION", "METHOD", "AUTHORITY", "PATH", "STATUS",
           "LATENCY", "BYTES IN/OUT", "FLAGS", "TLS")


DENIED_DETAILS = "rbac_access_denied_matched_policy["


def register(app: typer.Typer) -> None:
    app.command(name="tap")(tap)


def tap(
    ctx: typer.Context,
    target: Annotated[str, typer.Argument(
        help="A service or workload name; service/NAME or workload/NAME when both exist")],
    namespace: Annotated[str, typer.Option("-n", "--namespace")] = "default",
    path: Annotated[str | None, typer.Option(
        help="Only paths under this prefix (whole segments, query ignored)")] = None,
    method: Annotated[str | None, typer.Option(help="Only this method")] = None,
    status: Annotated[str | None, typer.Option(
        help="Only these statuses: 503, 5xx, or a list such as 4xx,503")] = None,
    max_lines: Annotated[int | None, typer.Option(
        "--max", help="Stop after this many lines (a request through the mesh shows once "
                      "per side)")] = None,
    output: OutputOption = Format.TABLE,
) -> None:
    """Stream requests live: identities, method, path, status, latency, flags and TLS.

    Sidecars log only while a tap is attached; Ctrl-C detaches."""
    if output is Format.YAML:
        raise UsageError("tap prints table or json lines", hint="use -o table or -o json")
    client = ApiClient.from_state(ctx.obj.paths)
    query = {"target": target, "namespace": namespace, "path": path, "method": method,
             "status": status, "max": max_lines}
    count = dropped = 0
    try:
        for message in client.stream("/v1/tap", query):
            if "attached" in message:
                _attached(message["attached"], output)
            elif "request" in message:
                count += 1
                _print(message["request"], output)
            elif message.get("dropped", 0) > dropped:
                dropped = message["dropped"]
                print(f"warning: {dropped} requests dropped so far: this terminal did not "
                      "keep up (narrow the tap with --path, --method or --status)",
                      file=sys.stderr)
            elif "end" in message:
                break
    except KeyboardInterrupt:
        pass  # Ctrl-C: closing the stream detaches the session
    print(f"tap ended after {count} line{'s' if count != 1 else ''}", file=sys.stderr)


def _attached(info: dict[str, Any], output: Format) -> None:
    target = info["target"]
    proxies = info["proxies"]
    print(f"tapping {target['kind']} {target['namespace']}/{target['name']} on "
          f"{len(proxies)} sidecar{'s' if len(proxies) != 1 else ''}; Ctrl-C to stop",
          file=sys.stderr)
    if not info.get("synced", True):
        print("warning: not every sidecar confirmed its logger in time; some requests may "
              "be missing", file=sys.stderr)
    if output is Format.TABLE:
        print("  ".join(COLUMNS), flush=True)


def _print(event: dict[str, Any], output: Format) -> None:
    import json

    text = json.dumps(event) if output is Format.JSON else format_event(event)
    print(text, flush=True)


def format_event(e: dict[str, Any]) -> str:
    """One request as one table line (requests arrive one by one: no alignment)."""
    time = str(e.get("time") or "-").partition("T")[2] or "-"
    return "  ".join(str(part) for part in (
        time, "in" if e.get("direction") == "inbound" else "out",
        f"{_source(e)} -> {_destination(e)}", e.get("method") or "-",
        e.get("authority") or "-", e.get("path") or "-", _status(e),
        f"{e['latencyMs']}ms" if e.get("latencyMs") is not None else "-",
        f"{_int(e.get('bytesReceived'))}/{_int(e.get('bytesSent'))}",
        _flags(e), _tls(e), *_authorization(e)))


def _authorization(e: dict[str, Any]) -> tuple[str, ...]:
    """The AuthorizationPolicy that denied the request, or that would in dry run."""
    marks = []
    details = str(e.get("details") or "")
    if details.startswith(DENIED_DETAILS):
        marks.append(f"denied-by: {details.removeprefix(DENIED_DETAILS).rstrip(']')}")
    if e.get("wouldDeny"):
        marks.append(f"would-deny: {e['wouldDeny']}")
    if e.get("wouldRoute"):  # a DryRun HTTPRoute's decision
        marks.append(f"would-route: {e['wouldRoute']}")
    return tuple(marks)


def _status(e: dict[str, Any]) -> str:
    """The HTTP status, and a gRPC call's own outcome beside it: a gRPC failure arrives in
    an HTTP 200 ("200 gRPC UNAVAILABLE (14) 'greeter-2 is flaky'")."""
    http = str(e.get("status") or "-")
    if grpc_status.name_of(e.get("grpcStatus")) is None:
        return http
    text = f"{http} gRPC {grpc_status.describe(e.get('grpcStatus'))}"
    return f"{text} {e['grpcMessage']!r}" if e.get("grpcMessage") else text


def _source(e: dict[str, Any]) -> str:
    return str(e.get("source") or e.get("sourceAddress") or "-")


def _destination(e: dict[str, Any]) -> str:
    if e.get("destination"):
        return str(e["destination"])
    cluster = str(e.get("upstreamCluster") or "")
    kind, _, rest = cluster.partition("|")
    if kind == "external":  # out of the mesh: "external|HOST|PORT"
        host, _, port = rest.partition("|")
        return f"{host}:{port} (external)"
    if cluster == "passthrough":
        return "(passthrough: ALLOW_ANY)"
    # No peer proved an identity (no connection was made): name the service that was meant.
    return f"({rest})" if kind == "outbound" else "-"


def _flags(e: dict[str, Any]) -> str:
    """The response flags with what they mean: "UF,URX (upstream connection failure, ...)"."""
    flags = response_flags.parse(e.get("flags"))
    if not flags:
        return "-"
    return f"{','.join(flags)} ({', '.join(response_flags.meaning(f) for f in flags)})"


def _tls(e: dict[str, Any]) -> str:
    version = e.get("tlsVersion")
    if e.get("mtls"):
        return f"mTLS {version or ''}".strip()
    if version:
        return str(version)
    # A request the sidecar answered itself, or whose connection never came up, had no TLS
    # and no plaintext either: say what happened instead.
    failed = response_flags.no_connection(e.get("flags"))
    if failed is not None:
        return f"no connection: {response_flags.meaning(failed)}"
    return "plaintext"


def _int(value: Any) -> str:
    return "-" if value is None else str(value)
