"""`tulle proxy-status [PROXY]`: is every sidecar running the config the control plane sent?

Per proxy and per xDS type, in the words of ``tulle.xds.sync``: SYNCED, PENDING (sent, waiting
for the ACK), STALE (sent, not ACKed for longer than the control plane's threshold, `tulle up
--stale-after`, 10 s by default), NACKED (with Envoy's message) or NOT SENT. The control plane
classifies; this command shows. Exits 1 when a shown proxy is NACKED or STALE, so scripts can
wait on it.
"""

from __future__ import annotations

import sys
import time
from typing import Annotated, Any

import typer

from tulle.cli import complete, proxies
from tulle.cli.output import Format, OutputOption, WatchOption, duration, render, table, watch
from tulle.client import ApiClient
from tulle.xds.sync import TYPES, ProxySync, SyncState, TypeSync


def register(app: typer.Typer) -> None:
    app.command("proxy-status")(proxy_status)


def proxy_status(
    ctx: typer.Context,
    proxy: Annotated[str | None, typer.Argument(
        help="NAME.NAMESPACE, or NAME with -n", autocompletion=complete.proxies)] = None,
    namespace: Annotated[str, typer.Option("-n", "--namespace")] = "default",
    output: OutputOption = Format.TABLE,
    watch_: WatchOption = False,
) -> None:
    """xDS sync state of each proxy, per type. Exit code 1 if one is NACKED or STALE."""
    client = ApiClient.from_state(ctx.obj.paths)

    def show() -> tuple[str, list[dict[str, Any]]]:
        syncs = proxies.sync_states(client)
        now = time.time()
        if proxy is None:
            views = [proxy_view(s, now) for s in syncs]
            return render(views, output, render_summary), views
        node = proxies.resolve(proxy, namespace, (s.node for s in syncs))
        views = [proxy_view(s, now) for s in syncs if s.node == node]
        return render(views[0], output, render_detail), views

    if watch_:
        watch(lambda: show()[0])
        return
    text, views = show()
    sys.stdout.write(text)
    if any(not v["healthy"] for v in views):
        raise typer.Exit(1)


# -- the view: pure, from the typed sync state -------------------------------------------------

def _seconds(now: float, at: float | None) -> float | None:
    return None if at is None else round(now - at, 1)


def type_view(sync: TypeSync, now: float, stale_after_s: float) -> dict[str, Any]:
    waiting = sync.waiting_s(now)
    waited = None if waiting is None else round(waiting, 1)
    return {
        "state": sync.state.label,
        "waitingSeconds": waited,  # PENDING or STALE: since the push
        "staleSeconds": waited if sync.state is SyncState.STALE else None,
        "sentVersion": sync.sent_version,
        "ackedVersion": sync.acked_version,
        "lastPushAt": sync.sent_at,
        "lastPushSeconds": _seconds(now, sync.sent_at),
        "nackMessage": (sync.nack.message if sync.state is SyncState.NACKED and sync.nack
                        else None),
        "staleAfterSeconds": stale_after_s,
    }


def proxy_view(sync: ProxySync, now: float) -> dict[str, Any]:
    return {
        "node": sync.node,
        "state": sync.state.label,
        "protocol": sync.protocol,
        "connectedAt": sync.connected_at,
        "connectedSeconds": _seconds(now, sync.connected_at),
        "lastPushAt": sync.last_push_at,
        "lastPushSeconds": _seconds(now, sync.last_push_at),
        "types": {t: type_view(sync.of(t), now, sync.stale_after_s) for t in TYPES},
        "healthy": not sync.state.failing,
    }


# -- rendering ---------------------------------------------------------------------------------

def _cell(view: dict[str, Any]) -> str:
    """The state, and how long a push has waited for its ACK: ``PENDING (4s)``."""
    if view["waitingSeconds"] is not None:
        return f"{view['state']} ({duration(view['waitingSeconds'])})"
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
            lines += ["", f"{name} {SyncState.NACKED.label} by Envoy:",
                      *("  " + m for m in message.splitlines())]
    return "\n".join(lines)
