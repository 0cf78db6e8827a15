"""What the agent is told to run. The CLI validates the user's flags and hands this over."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

JOIN_TOKEN_ENV = "TULLE_JOIN_TOKEN"


@dataclass(frozen=True)
class AgentConfig:
    state_dir: str
    service: str
    name: str
    namespace: str
    envoy_binary: str
    command: tuple[str, ...] = ()
    app_port: int | None = None
    version: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    upstreams: tuple[tuple[str, int], ...] = ()  # (service or service.namespace, local port)
    xds_protocol: str = "delta"
    concurrency: int = 1
    envoy_log_level: str = "warning"
    ready_timeout_s: float = 30.0
    stop_timeout_s: float = 10.0
    service_account: str = ""
    # The instance name was generated (no --name): nothing can refer to its directory once
    # it is gone, so a clean exit removes it (a failed one keeps its logs to read).
    ephemeral: bool = False
    # A control plane on another host: its identity port (https://HOST:PORT) and the CA's
    # pinned fingerprint. The join token comes in the environment (JOIN_TOKEN_ENV), never
    # on a command line other users can read; ``address``: where other hosts reach this one
    # (default: this host's address on the route to the control plane).
    control_plane: str = ""
    ca_fingerprint: str = ""
    address: str = ""
    # An ingress gateway (`tulle gateway run`): the port it serves, where, and its TLS files.
    gateway_port: int | None = None
    gateway_listen_address: str = "0.0.0.0"
    gateway_tls_cert: str = ""
    gateway_tls_key: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> AgentConfig:
        data = json.loads(text)
        data["command"] = tuple(data.get("command", ()))
        data["upstreams"] = tuple((str(s), int(p)) for s, p in data.get("upstreams", ()))
        return cls(**data)
