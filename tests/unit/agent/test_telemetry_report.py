"""The agent's telemetry reports: on demand (diagnose asks) and periodic reports never send
the same delta twice, and a report that did not arrive is sent again with the next."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tulle.agent import http
from tulle.agent.telemetry import Telemetry

STAT = "cluster.outbound|books|default.upstream_rq_2xx"


class Admin:
    """Envoy's admin interface, whose request counter a test moves."""

    def __init__(self) -> None:
        self.requests = 0
        self.targets: list[str] = []  # what the agent asked Envoy's admin

    async def request(self, method: str, target: str, *, timeout: float = 10.0
                      ) -> http.Response:
        self.targets.append(target)
        body = json.dumps({"stats": [{"name": STAT, "value": self.requests}]}).encode()
        return http.Response(200, {}, body)


def sent_requests(payloads: list[dict[str, Any]]) -> list[int]:
    return [s["v"]["rq2"] for p in payloads for s in p["series"] if "rq2" in s["v"]]


def test_concurrent_reports_send_each_delta_once() -> None:
    admin = Admin()
    payloads: list[dict[str, Any]] = []
    accept = [True]

    async def send(payload: dict[str, Any]) -> bool:
        await asyncio.sleep(0.01)  # the control plane's round trip: reports overlap here
        if accept[0]:
            payloads.append(payload)
        return accept[0]

    async def scenario() -> None:
        telemetry = Telemetry(admin, (), send, interval_s=5.0)
        admin.requests = 20
        assert await asyncio.gather(telemetry.report(), telemetry.report()) == [True, True]
        assert sent_requests(payloads) == [20]
        accept[0] = False  # the control plane is away: the delta waits
        admin.requests = 25
        assert await telemetry.report() is False
        accept[0] = True
        admin.requests = 27
        assert await telemetry.report() is True
        assert sent_requests(payloads) == [20, 7]

    asyncio.run(scenario())


def test_no_report_when_telemetry_is_off() -> None:
    async def send(payload: dict[str, Any]) -> bool:
        raise AssertionError("nothing may be sent")

    assert asyncio.run(Telemetry(Admin(), (), send, interval_s=None).report()) is False


@pytest.mark.parametrize(("fresh", "reads"), [(False, 1), (True, 2)],
                         ids=["periodic: one read", "on demand: merge, then read"])
def test_reads_per_report(fresh: bool, reads: int) -> None:
    admin = Admin()

    async def send(payload: dict[str, Any]) -> bool:
        return True

    async def scenario() -> None:
        admin.requests = 3
        assert await Telemetry(admin, (), send, interval_s=5.0).report(fresh=fresh)

    asyncio.run(scenario())
    assert len(admin.targets) == reads
    assert admin.targets[-1].startswith("/stats?format=json")
