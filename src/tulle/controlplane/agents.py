"""Where a workload's agent listens and how to authenticate to it: one place for every
control-plane call to an agent (admin pages, log levels and logs, diagnosis reads)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tulle.controlplane.app import ControlPlane


@dataclass(frozen=True)
class AgentTarget:
    base_url: str  # "http://ADDRESS:AGENT_PORT"
    headers: Mapping[str, str]  # the agent token it chose at registration

    def url(self, path: str) -> str:
        return self.base_url + path


def agent_target(cp: ControlPlane, node_id: str) -> AgentTarget | None:
    """The agent of a registered workload, or None when ``node_id`` is not registered."""
    workload = cp.registry.get(node_id)
    credentials = cp.registry.credentials(node_id)
    if workload is None or credentials is None:
        return None
    return AgentTarget(f"http://{workload.address}:{workload.agent_port}",
                       {"Authorization": f"Bearer {credentials.agent_token}"})
