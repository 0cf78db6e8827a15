"""`tulle proxy-status [PROXY]`: is every sidecar running the config the control plane sent?

Per proxy and per xDS type: SYNCED, STALE (sent, not ACKed yet), NACKED (with Envoy's
message) or NOT SENT. Exits 1 when a shown proxy is NACKED, or STALE for longer than the
control plane's threshold (`tulle up --stale-after`, 10 s by default), so scripts can wait on
it.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from tulle.cli import proxies
from tulle.cli.output import Format, OutputOption, duration, emit, table
from tulle.client import ApiClient
from tulle.xds.tracker import DEFAULT_STALE_AFTER_S, stale_after

TYPES = ("CDS", "EDS", "LDS", "RDS", "SDS")
# The tracker's states, in the words of this command.
_STATES = {"SYNCED": "SYNCED", "PENDING": "STALE", "NACKED": "NACKED", "NOT_SENT": "NOT SENT"}


def register(app: typer.Typer) -> None:
    app.command("proxy-status")(proxy_status)


def proxy_status(
    ctx: typer.Context,
    proxy: Annotated[str | None, typer.Argument(help="NAME.NAMESPACE, or NAME with -n")] = None,
    namespace: Annotated[str, typer.Option("-n", "--namespace")] = "default",
    output: OutputOption = Format.TABLE,
) -> None:
    """xDS sync state of each proxy, per type. Exit code 1 if one is NACKED or STALE."""
    statuses: list[dict[str, Any]] = ApiClient.from_state(ctx.obj.paths).get("/v1/proxies")
    now = time.time()
    if proxy is None:
        views = [proxy_view(s, now) for s in statuses]
        emit(views, output, render_summary)
    else:
        node = proxies.resolve(proxy, namespace, (s["node"] for s in statuses))
        views = [proxy_view(s, now) for s in statuses if s["node"] == node]
        emit(views[0], output, render_detail)
    if any(not v["healthy"] for v in views):
        raise typer.Exit(1)


# -- the view: pure, from the API's status data ------------------------------------------------

def type_view(status: dict[str, Any] | None, now: float,
              stale_after_s: float = DEFAULT_STALE_AFTER_S) -> dict[str, Any]:
    status = status or {}
    state = _STATES.get(str(status.get("state", "NOT_SENT")), "NOT SENT")
    sent_at = status.get("sentAt")
    nack = status.get("nack")
    return {
        "state": state,
        "staleSeconds": round(now - sent_at, 1) if state == "STALE" and sent_at else None,
        "sentVersion": status.get("sentVersion") or "",
        "ackedVersion": status.get("ackedVersion") or "",
        "lastPushAt": sent_at,
        "lastPushSeconds": round(now - sent_at, 1) if sent_at else None,
        "nackMessage": nack.get("message", "") if state == "NACKED" and nack else None,
        "staleAfterSeconds": stale_after_s,
    }


def proxy_view(status: dict[str, Any], now: float) -> dict[str, Any]:
    threshold = stale_after(status)
    types = {t: type_view(status.get("types", {}).get(t), now, threshold) for t in TYPES}
    pushes = [v["lastPushAt"] for v in types.values() if v["lastPushAt"]]
    connected_at = status.get("connectedAt")
    return {
        "node": status["node"],
        "protocol": status.get("protocol", ""),
        "connectedAt": connected_at,
        "connectedSeconds": round(now - connected_at, 1) if connected_at else None,
        "lastPushAt": max(pushes) if pushes else None,
        "lastPushSeconds": round(now - max(pushes), 1) if pushes else None,
        "types": types,
        "healthy": not any(_failing(v) for v in types.values()),
    }


def _failing(view: dict[str, Any]) -> bool:
    if view["state"] == "NACKED":
        return True
    return bool(view["state"] == "STALE"
                and (view["staleSeconds"] or 0) > float(view["staleAfterSeconds"]))


# -- rendering ---------------------------------------------------------------------------------

def _cell(view: dict[str, Any]) -> str:
    if view["state"] == "STALE" and view["staleSeconds"] is not None:
        return f"STALE ({duration(view['staleSeconds'])})"
    return str(view["state"])


def _ago(seconds: float | None) -> str:
    return "-" if seconds is None else f"{duration(seconds)} ago"


def render_summary(views: list[dict[str, Any]]) -> str:
    if not views:
        return "No proxies connected."
    rows = [[v["node"], *(_cell(v["types"][t]) for t in TYPES),
             duration(v["connectedSeconds"] or 0), _ago(v["lastPushSeconds"])] for v in views]
    return table(["PROXY", *TYPES, "CONNECTED", "LAST PUSH"], rows)


def render_detail(view: dict[str, Any]) -> str:
    connected = duration(view["connectedSeconds"] or 0)
    lines = [f"Proxy {view['node']} ({view['protocol']}), connected for {connected}, "
             f"last push {_ago(view['lastPushSeconds'])}", ""]
    rows = [[name, _cell(t), t["sentVersion"], t["ackedVersion"], _ago(t["lastPushSeconds"])]
            for name, t in view["types"].items()]
    lines.append(table(["TYPE", "STATE", "SENT VERSION", "ACKED VERSION", "LAST PUSH"], rows))
    for name in TYPES:
        message = view["types"][name]["nackMessage"]
        if message is not None:
            lines += ["", f"{name} NACKED by Envoy:", *("  " + m for m in message.splitlines())]
    return "\n".join(lines)
