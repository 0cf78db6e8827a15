"""The connected proxies for the CLI: their sync states, and naming one on the command line
(`NAME.NAMESPACE`, or `NAME` with `-n`)."""

from __future__ import annotations

from collections.abc import Iterable

from tulle.client import ApiClient
from tulle.errors import NotFoundError
from tulle.xds.sync import ProxySync


def sync_states(client: ApiClient) -> list[ProxySync]:
    """Every connected proxy's sync state, as the control plane classified it, by node."""
    return [ProxySync.from_json(p) for p in client.get("/v1/proxies")]


def node_id(proxy: str, namespace: str) -> str:
    """``web-1`` with ``-n shop`` is ``web-1.shop``; ``web-1.shop`` stays as it is."""
    return proxy if "." in proxy else f"{proxy}.{namespace}"


def resolve(proxy: str, namespace: str, known: Iterable[str]) -> str:
    """The node id of ``proxy`` among the ``known`` ones, or an error that lists them."""
    known = sorted(known)
    wanted = node_id(proxy, namespace)
    if wanted in known:
        return wanted
    raise NotFoundError(f"no connected proxy {wanted}",
                        hint="connected proxies: " + (", ".join(known) or "none (start one "
                                                      "with `tulle run`)"))
