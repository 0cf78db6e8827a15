"""The agent's admin proxy: what it lets through of Envoy's admin interface, and the secrets it
takes out of Envoy's config on the way."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from tulle.agent import http
from tulle.agent.adminproxy import AdminProxy
from tulle.security import REDACTED

TOKEN = "agent-token-0123456789"
CREDENTIAL = "xds-credential-abcdefghijklmnop"
DUMP = {"configs": [{
    "@type": "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump",
    "bootstrap": {"node": {"id": "web-1.default"}, "dynamic_resources": {"ads_config": {
        "grpc_services": [{"envoy_grpc": {"cluster_name": "tulle-xds"},
                           "initial_metadata": [{"key": "authorization",
                                                 "value": f"Bearer {CREDENTIAL}"}]}]}}}}]}


class FakeAdmin:
    """Envoy's admin interface: a canned answer per target; records what was asked."""

    def __init__(self, pages: dict[str, http.Response]) -> None:
        self.pages = pages
        self.asked: list[tuple[str, str]] = []

    async def request(self, method: str, target: str, *, timeout: float = 10.0
                      ) -> http.Response:
        self.asked.append((method, target))
        return self.pages.get(target, http.Response(404, {}, b"no such page"))


def get(proxy: AdminProxy, path: str, query: str = "", token: str = TOKEN,
        method: str = "GET") -> http.Response:
    request = http.Request(method, path, query, {"authorization": f"Bearer {token}"})
    # As the agent's server does: the head is admitted (or refused) before anything else.
    refused = proxy.admit(request)
    return refused if refused is not None else asyncio.run(proxy.handle(request))


def json_page(data: Any) -> http.Response:
    return http.Response(200, {"content-type": "application/json"}, json.dumps(data).encode())


def test_config_dump_comes_out_without_the_xds_credential() -> None:
    admin = FakeAdmin({"/config_dump?include_eds": json_page(DUMP)})
    answer = get(AdminProxy(TOKEN, admin), "/admin/config_dump", "include_eds")
    assert answer.status == 200 and answer.headers["Content-Type"] == "application/json"
    assert CREDENTIAL.encode() not in answer.body
    services = json.loads(answer.body)["configs"][0]["bootstrap"]["dynamic_resources"][
        "ads_config"]["grpc_services"]
    assert services == [{"envoy_grpc": {"cluster_name": "tulle-xds"},
                         "initial_metadata": [{"key": "authorization", "value": REDACTED}]}]


def test_a_config_dump_that_cannot_be_redacted_is_not_shown() -> None:
    admin = FakeAdmin({"/config_dump": http.Response(200, {}, b"Bearer " + CREDENTIAL.encode())})
    answer = get(AdminProxy(TOKEN, admin), "/admin/config_dump")
    assert answer.status == 502 and CREDENTIAL.encode() not in answer.body


def test_other_pages_and_envoys_errors_pass_as_they_are() -> None:
    stats = http.Response(200, {"content-type": "text/plain"}, b"a.b: 1\n")
    refused = http.Response(404, {"content-type": "text/plain"}, b"bad mask\n")
    admin = FakeAdmin({"/stats": stats, "/config_dump?mask=x": refused})
    proxy = AdminProxy(TOKEN, admin)
    assert get(proxy, "/admin/stats").body == b"a.b: 1\n"
    answer = get(proxy, "/admin/config_dump", "mask=x")
    assert (answer.status, answer.body) == (404, b"bad mask\n")


def test_only_the_token_holder_reads_and_only_read_only_pages() -> None:
    admin = FakeAdmin({"/config_dump": json_page(DUMP)})
    proxy = AdminProxy(TOKEN, admin)
    assert get(proxy, "/admin/config_dump", token="wrong-token").status == 401
    for path, method in (("/admin/quitquitquit", "POST"), ("/admin/drain_listeners", "POST"),
                         ("/admin/quitquitquit", "GET"), ("/admin/logging", "GET")):
        assert get(proxy, path, method=method).status == 404
    assert admin.asked == []


def test_a_report_on_demand_needs_the_agent_token() -> None:
    """`tulle diagnose` asks for a report now: only the control plane (the agent token) may,
    and the answer is what the agent says about its processes."""
    asked: list[int] = []

    async def report() -> dict[str, Any]:
        asked.append(1)
        return {"reported": True, "app": {"pid": 7, "state": "T", "command": "app"}}

    proxy = AdminProxy(TOKEN, FakeAdmin({}), report=report)
    answer = get(proxy, "/report", method="POST")
    assert answer.status == 200 and json.loads(answer.body)["app"]["state"] == "T"
    assert get(proxy, "/report", method="POST", token="wrong").status == 401
    assert get(proxy, "/report").status == 404  # a GET changes nothing: not a route
    assert asked == [1]


def test_the_clock_is_told_to_the_control_plane_only() -> None:
    """`tulle check` and `tulle diagnose` compare the hosts' clocks: the agent tells its time,
    with its report and on its own, to the agent token's holder."""
    async def report() -> dict[str, Any]:
        return {"reported": True}

    proxy = AdminProxy(TOKEN, FakeAdmin({}), report=report)
    before = time.time()
    told = json.loads(get(proxy, "/clock").body)["time"]
    reported = json.loads(get(proxy, "/report", method="POST").body)["time"]
    assert before <= told <= reported <= time.time()
    assert get(proxy, "/clock", token="wrong").status == 401
    assert get(proxy, "/clock", method="POST").status == 404
