"""Shell completion of names: kinds, resources, services, workloads and proxies.

Completion runs the CLI once per Tab press, so it asks the control plane with a short
timeout and completes nothing, silently, when it cannot ask (no control plane running).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import typer

ASK_TIMEOUT_S = 1.0
_VIEWS = {"services": "/v1/services", "workloads": "/v1/workloads"}


def _client(ctx: typer.Context) -> Any:
    from tulle.client import ApiClient
    from tulle.settings import StatePaths

    root = ctx.find_root()
    state_dir = root.params.get("state_dir") if root.params else None
    return ApiClient.from_state(StatePaths.resolve(state_dir), timeout=ASK_TIMEOUT_S)


def _matching(names: Iterable[str], incomplete: str) -> list[str]:
    return sorted({n for n in names if n.startswith(incomplete)})


def kinds(incomplete: str) -> list[str]:
    from tulle.model.kinds import KINDS

    names = [k.plural for k in KINDS] + ["services", "workloads", "proxies"]
    return _matching(names, incomplete)


def _names(ctx: typer.Context, kind: str) -> list[str]:
    from tulle.model.kinds import find_kind

    client = _client(ctx)
    wanted = kind.lower()
    if wanted in ("services", "service", "svc"):
        return [s["name"] for s in client.get("/v1/services")]
    if wanted in ("workloads", "workload", "wl"):
        return [w["name"] for w in client.get("/v1/workloads")]
    if wanted in ("proxies", "proxy"):
        return [p["node"] for p in client.get("/v1/proxies")]
    info = find_kind(kind)
    if info is None:
        return []
    return [s["manifest"]["metadata"]["name"] for s in client.get(f"/v1/resources/{kind}")]


def names(ctx: typer.Context, incomplete: str) -> list[str]:
    """Names of the kind given before (``get httproutes <Tab>``)."""
    kind = ctx.params.get("kind") or ""
    try:
        return _matching(_names(ctx, str(kind)), incomplete)
    except Exception:  # completion must never print a traceback into the shell
        return []


def services(ctx: typer.Context, incomplete: str) -> list[str]:
    try:
        return _matching(_names(ctx, "services"), incomplete)
    except Exception:
        return []


def proxies(ctx: typer.Context, incomplete: str) -> list[str]:
    try:
        return _matching(_names(ctx, "proxies"), incomplete)
    except Exception:
        return []


SHELLS = ("bash", "zsh", "fish")


def script(shell: str) -> str:
    """The script that hooks tulle's completion into ``shell``. Typer answers the Tab presses
    (through ``_TULLE_COMPLETE``); this is its script for each shell."""
    from typer._completion_shared import get_completion_script

    return get_completion_script(prog_name="tulle", complete_var="_TULLE_COMPLETE",
                                 shell=shell)
