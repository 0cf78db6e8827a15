"""A control plane that makes one chosen proxy's Envoy reject a route table: tests of NACKs only.

tulle validates every resource before storing it and translates each apply for every proxy
first, so the real control plane never sends config Envoy refuses. To see a real NACK (Envoy's
own message, the tracker, `proxy-status`, `diagnose`), the tests start this instead of
`python -m tulle.controlplane`. It is the real control plane with one difference, applied to the
proxy named by ``--reject-node`` only: a route that sets the request header
``x-tulle-test-reject`` (an ordinary, valid HTTPRoute RequestHeaderModifier) is sent with that
header renamed to ``host``, which Envoy refuses to modify. Every other proxy gets the true config.

The trigger is a stored, valid change, so it shows up in the store history like any real one.
This module lives under ``tests/``: it is not part of the package and nothing in ``src/`` can
reach it, so production cannot trigger it by accident.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from envoy.config.route.v3 import route_pb2

from tests.support.mesh import Mesh, wait_for

TRIGGER_HEADER = "x-tulle-test-reject"
REJECTED_AS = "host"  # Envoy: ":-prefixed or host headers may not be modified"
REPO = Path(__file__).resolve().parent.parent.parent

# A valid HTTPRoute whose single rule carries the trigger: books answers as usual everywhere,
# except that the chosen proxy's Envoy refuses the route table that contains it.
TRIGGER_ROUTE = f"""\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: books}}
spec:
  parentRefs: [{{name: books}}]
  rules:
  - backendRefs: [{{name: books}}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {{set: [{{name: {TRIGGER_HEADER}, value: "1"}}]}}
"""


def _reject_routes(config: Any) -> Any:
    """``config`` (a ProxyConfig) with the trigger header renamed in every route table."""
    from tulle.xds import types
    from tulle.xds.config import ProxyConfig
    from tulle.xds.wire import encode

    routes = config.of_type(types.ROUTE)
    changed = []
    for name, encoded in routes.items():
        table = route_pb2.RouteConfiguration()
        any_value = _any_value(encoded.sotw_entry)
        table.ParseFromString(any_value)
        hit = False
        for host in table.virtual_hosts:
            for route in host.routes:
                for option in route.request_headers_to_add:
                    if option.header.key == TRIGGER_HEADER:
                        option.header.key = REJECTED_AS
                        hit = True
        changed.append(encode(types.ROUTE, name, table) if hit else encoded)
    if all(a is b for a, b in zip(changed, routes.values(), strict=True)):
        return config
    by_type = {t: tuple(config.of_type(t).values()) for t in config.resources}
    by_type[types.ROUTE] = tuple(changed)
    return ProxyConfig.build(config.mesh_version, by_type)


def _any_value(sotw_entry: bytes) -> bytes:
    """The resource bytes inside a pre-encoded DiscoveryResponse.resources[] entry."""
    from google.protobuf import any_pb2

    # sotw_entry = field 2 (LEN) holding an Any; skip the tag and the length varint.
    index = 1
    while sotw_entry[index] & 0x80:
        index += 1
    wrapped = any_pb2.Any()
    wrapped.ParseFromString(sotw_entry[index + 1:])
    return bytes(wrapped.value)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.rejecting_controlplane")
    parser.add_argument("--reject-node", required=True)
    args, rest = parser.parse_known_args()
    from tulle.controlplane import __main__ as entry
    from tulle.controlplane.configpath import ProxyConfigs

    original = ProxyConfigs.config_for

    def config_for(self: ProxyConfigs, proxy: Any) -> Any:
        config = original(self, proxy)
        return _reject_routes(config) if proxy.node_id == args.reject_node else config

    ProxyConfigs.config_for = config_for  # type: ignore[method-assign]
    return entry.main(rest)


class RejectingMesh(Mesh):
    """A mesh whose control plane makes ``reject_node`` NACK route tables with the trigger."""

    reject_node = "web-1.default"

    def up(self, *extra: str) -> dict[str, Any]:
        self.paths.ensure()
        command = [sys.executable, "-m", "tests.support.rejecting_controlplane",
                   "--reject-node", self.reject_node, "--state-dir", str(self.state_dir),
                   "--detached", *self.port_flags(), *extra]
        fd = os.open(self.paths.log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "ab") as log:
            process = subprocess.Popen(command, cwd=REPO, env=self.env(), stdout=log,
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       start_new_session=True)

        def started() -> dict[str, Any] | None:
            if process.poll() is not None:
                raise AssertionError(f"the control plane exited ({process.returncode}):\n"
                                     + self.paths.log_file.read_text(errors="replace"))
            status = self.status()
            return status if status.get("pid") == process.pid else None

        status: dict[str, Any] = wait_for("the rejecting control plane", started, timeout=20)
        return status


if __name__ == "__main__":
    sys.exit(main())
