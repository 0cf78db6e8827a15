"""Where tap sessions are attached on one proxy: ephemeral control-plane state that the access-log
generator reads beside the mesh snapshot (``tulle.tap`` plans it, ``tulle.xds`` renders it)."""

from __future__ import annotations

from dataclasses import dataclass

from tulle.model.meta import ServiceRef


@dataclass(frozen=True)
class ProxyTaps:
    inbound: bool = False
    outbound: bool = False  # every request the proxy sends
    destinations: frozenset[ServiceRef] = frozenset()  # sent requests to these services

    def __bool__(self) -> bool:
        return self.inbound or self.outbound or bool(self.destinations)


NO_TAPS = ProxyTaps()
