"""Habits a kubectl user brings: `get -o yaml|json` of several resources applies again, global
options after the subcommand, `describe svc`, and errors at the offending field's line."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.mesh import ECHO_APP, TULLE, Mesh, wait_for
from tests.support.ports import free_port

pytestmark = pytest.mark.envoy

RESOURCES = """\
apiVersion: tulle.io/v1alpha1
kind: Service
metadata: {name: books}
spec: {protocol: http}
---
apiVersion: tulle.io/v1alpha1
kind: Service
metadata: {name: books-v2}
spec:
  selector: {version: v2}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: books}
spec:
  parentRefs: [{name: books}]
  rules:
  - name: canary
    backendRefs: [{name: books, weight: 90}, {name: books-v2, weight: 10}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: books-admin}
spec:
  parentRefs: [{name: books}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /admin}}]
    backendRefs: [{name: books}]
"""


def test_get_of_several_resources_applies_again(mesh: Mesh, tmp_path: Path) -> None:
    mesh.cli("apply", "-f", "-", stdin=RESOURCES)
    revision = mesh.status()["storeRevision"]
    for output in ("yaml", "json"):
        listed = mesh.cli("get", "httproutes", "-o", output).stdout
        assert "kind: List" in listed or '"kind": "List"' in listed
        saved = tmp_path / f"routes.{output}"
        saved.write_text(listed)
        applied = mesh.cli("apply", "-f", str(saved)).stdout
        assert applied.splitlines() == ["httproute/books (default) unchanged",
                                        "httproute/books-admin (default) unchanged"], applied
    assert mesh.status()["storeRevision"] == revision

    # Edited and applied back, the List changes what was edited and nothing else.
    edited = tmp_path / "edited.yaml"
    edited.write_text(mesh.cli("get", "httproutes", "-o", "yaml").stdout
                      .replace("weight: 10", "weight: 20").replace("weight: 90", "weight: 80"))
    applied = mesh.cli("apply", "-f", str(edited)).stdout
    assert "httproute/books (default) configured" in applied, applied
    assert "httproute/books-admin (default) unchanged" in applied, applied


def test_global_options_after_the_subcommand(mesh: Mesh) -> None:
    mesh.cli("apply", "-f", "-", stdin=RESOURCES)
    after = subprocess.run([*TULLE, "get", "httproutes", "--state-dir", str(mesh.state_dir),
                            "-o", "json"], capture_output=True, text=True, env=mesh.env(),
                           timeout=60, check=False)
    assert after.returncode == 0, after.stderr
    names = [item["metadata"]["name"] for item in json.loads(after.stdout)["items"]]
    assert names == ["books", "books-admin"]
    described = mesh.cli("describe", "svc", "books", "-o", "json")
    assert json.loads(described.stdout)["name"] == "books"


def test_errors_name_the_line_of_the_field(mesh: Mesh, tmp_path: Path) -> None:
    mesh.cli("apply", "-f", "-", stdin=RESOURCES)
    bad = tmp_path / "route.yaml"
    bad.write_text(RESOURCES.split("---\n")[3].replace("name: books}]\n  rules",
                                                       "name: books}]\n  rules", 1)
                   .replace("value: /admin", "value: admin"))
    result = mesh.cli("apply", "-f", str(bad), check=False)
    assert result.returncode != 0
    # The value is on line 7, column 34 of the file; the document starts on line 1.
    assert f"{bad}:7:" in result.stderr, result.stderr
    assert "spec.rules[0].matches[0].path" in result.stderr, result.stderr


MIRROR = """\
apiVersion: tulle.io/v1alpha1
kind: Service
metadata: {name: books-shadow}
spec: {protocol: http}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: books-mirror}
spec:
  parentRefs: [{name: books}]
  rules:
  - backendRefs: [{name: books}]
    filters:
    - type: RequestMirror
      requestMirror: {backendRef: {name: books-shadow}}
"""


def test_a_delete_that_breaks_references_is_refused_unless_forced(mesh: Mesh) -> None:
    mesh.cli("apply", "-f", "-", stdin=RESOURCES.split("---\n", maxsplit=1)[0] + "---\n" + MIRROR)
    revision = mesh.status()["storeRevision"]
    refused = mesh.cli("delete", "service", "books-shadow", check=False)
    assert refused.returncode != 0
    assert "HTTPRoute default/books-mirror" in refused.stderr, refused.stderr
    assert "requestMirror.backendRef.name" in refused.stderr
    assert "--force" in refused.stderr
    assert mesh.status()["storeRevision"] == revision  # nothing deleted

    mesh.cli("delete", "service", "books-shadow", "--force")
    analysis = json.loads(mesh.cli("analyze", "-o", "json", check=False).stdout)
    assert any(m["code"] == "TUL0001" and "books-mirror" in json.dumps(m)
               for m in analysis["messages"]), analysis


def test_subsets_and_clients_show_readiness_sensibly(mesh: Mesh) -> None:
    mesh.cli("apply", "-f", "-", stdin=RESOURCES.split("---\n", maxsplit=2)[1])  # books-v2
    mesh.run("books", name="books-1", extra=("--version", "v1"))
    mesh.run("books", name="books-2", extra=("--version", "v2"))
    mesh.run("web", name="web-1", app=False, command=["sleep", "60"])
    mesh.sync()
    rows = {s["name"]: s for s in json.loads(mesh.cli("get", "services", "-o", "json").stdout)}
    assert (rows["books-v2"]["workloads"], [e["workload"] for e in rows["books-v2"]["endpoints"]]
            ) == (["books-2"], ["books-2"])
    assert sorted(rows["books"]["workloads"]) == ["books-1", "books-2"]
    assert (rows["web"]["workloads"], rows["web"]["clients"]) == ([], ["web-1"])
    table = {line.split()[1]: line for line in mesh.cli("get", "services").stdout.splitlines()}
    assert " 1/1 " in table["books-v2"] and " 2/2 " in table["books"], table
    assert "- (1 client)" in table["web"], table


def test_wait_returns_once_the_service_is_ready_and_says_why_not(mesh: Mesh) -> None:
    missing = mesh.cli("wait", "service", "nobody", "--timeout", "1s", check=False)
    assert missing.returncode == 1, missing
    assert "no workload is registered" in missing.stderr, missing.stderr

    # Registered, but its application listens on another port than --port.
    port = free_port()
    mesh.run("bad", name="bad-1", port=port,
             command=[sys.executable, str(ECHO_APP), str(free_port())], wait=False)
    wait_for("bad-1 registered", lambda: any(
        w["name"] == "bad-1" for w in mesh.api.get("/v1/workloads")))
    stuck = mesh.cli("wait", "svc", "bad", "--timeout", "2s", check=False)
    assert stuck.returncode == 1
    assert f"does not accept connections on port {port}" in stuck.stderr, stuck.stderr

    # Started in the background, as the Quick start does: wait blocks until it serves.
    mesh.run("books", name="books-1", wait=False)
    ready = mesh.cli("wait", "service", "books", "--timeout", "30s", "-o", "json")
    assert json.loads(ready.stdout)["endpoints"] == ["books-1"]
    client = mesh.run("web", name="web-1")
    assert mesh.call(client, "http://books/")["status"] == 200


def test_watch_prints_again_when_the_answer_changes(mesh: Mesh, tmp_path: Path) -> None:
    mesh.run("books", name="books-1")
    out = tmp_path / "watch.out"
    with out.open("w") as sink:
        watcher = subprocess.Popen([*TULLE, "--state-dir", str(mesh.state_dir), "get",
                                    "workloads", "--watch"], stdout=sink,
                                   stderr=subprocess.STDOUT, env=mesh.env())
    try:
        wait_for("the first table", lambda: "books-1" in out.read_text())
        assert "books-2" not in out.read_text()
        mesh.run("books", name="books-2")
        wait_for("a second table with books-2", lambda: "books-2" in out.read_text())
        tables = out.read_text().split("\n\n")
        assert len(tables) >= 2 and "books-1" in tables[-1] and "books-2" in tables[-1]
    finally:
        watcher.send_signal(signal.SIGINT)
        assert watcher.wait(timeout=10) == 0

    status = subprocess.Popen([*TULLE, "--state-dir", str(mesh.state_dir), "proxy-status",
                               "-w", "-o", "json"], stdout=subprocess.PIPE, env=mesh.env(),
                              text=True)
    assert status.stdout is not None
    try:
        lines: list[str] = []
        while not lines or lines[-1] != "]\n":  # one JSON document per answer
            lines.append(status.stdout.readline())
        first = json.loads("".join(lines))
        assert {v["node"] for v in first} == {"books-1.default", "books-2.default"}
    finally:
        status.send_signal(signal.SIGINT)
        assert status.wait(timeout=10) == 0


def _complete(mesh: Mesh, shell: str, words: str) -> list[str]:
    env = mesh.env() | {"_TULLE_COMPLETE": f"complete_{shell}", "COMP_WORDS": words,
                        "COMP_CWORD": str(len(words.split(" ")) - 1),
                        "_TYPER_COMPLETE_ARGS": words,
                        "_TYPER_COMPLETE_FISH_ACTION": "get-args"}
    result = subprocess.run(TULLE, env=env, capture_output=True, text=True, timeout=30,
                            check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_shell_completion_of_commands_kinds_and_names(mesh: Mesh, shell: str) -> None:
    script = subprocess.run([*TULLE, "completion", shell], capture_output=True,
                            text=True, env=mesh.env(), timeout=30, check=False)
    assert script.returncode == 0 and f"complete_{shell}" in script.stdout, script
    mesh.cli("apply", "-f", "-", stdin=RESOURCES)
    state = f"--state-dir {mesh.state_dir}"
    assert any("describe" in word for word in _complete(mesh, shell, "tulle descr"))
    assert any("httproutes" in word for word in _complete(mesh, shell, "tulle get http"))
    names = _complete(mesh, shell, f"tulle {state} get httproutes books")
    assert any("books-admin" in word for word in names), names
    services = _complete(mesh, shell, f"tulle {state} describe service books-")
    assert any("books-v2" in word for word in services), services


def test_a_port_another_workload_holds_is_named_not_a_traceback(mesh: Mesh) -> None:
    books = mesh.run("books", name="books-1")
    assert books.app_port is not None
    again = mesh.cli("run", "--service", "books", "--port", str(books.app_port), "--",
                     sys.executable, str(ECHO_APP), str(books.app_port), check=False,
                     timeout=30)
    assert again.returncode == 2, again
    assert f"--port {books.app_port} is taken by another workload's application" in \
        again.stderr, again.stderr
    assert "echo.py" in again.stderr and "Traceback" not in again.stderr
    assert [w["name"] for w in mesh.api.get("/v1/workloads")] == ["books-1"]


def test_a_one_shot_run_leaves_no_directory_unless_it_failed(mesh: Mesh) -> None:
    workloads = mesh.state_dir / "workloads"
    mesh.cli("run", "--service", "client", "--", "true")
    assert not list(workloads.glob("client-*"))
    failed = mesh.cli("run", "--service", "client", "--", "false", check=False)
    assert failed.returncode == 1
    kept = list(workloads.glob("client-*"))
    assert len(kept) == 1 and (kept[0] / "envoy.log").exists(), kept
    assert str(kept[0]) in failed.stderr, failed.stderr  # it says where the logs are
    mesh.cli("run", "--service", "client", "--name", "named-1", "--", "true")
    assert (workloads / "named-1.default").is_dir()  # a name given: the user may look there


def test_routes_and_describe_list_rules_in_match_order_by_one_name(mesh: Mesh) -> None:
    mesh.run("books", name="books-1")
    mesh.cli("apply", "-f", "-", stdin="""\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: books}
spec:
  parentRefs: [{name: books}]
  rules:
  - backendRefs: [{name: books}]
  - name: search
    matches: [{path: {type: Exact, value: /search}}]
    backendRefs: [{name: books}]
""")
    routes = json.loads(mesh.cli("routes", "books", "-o", "json").stdout)["routes"]
    described = json.loads(mesh.cli("describe", "service", "books", "-o", "json").stdout)
    assert [r["rule"] for r in routes] == ["search", "0"]  # Exact before PathPrefix /
    assert [r["rule"] for r in described["routes"]] == ["search", "0"]
    # -w is --watch everywhere; the window is --window, and says what it accepts.
    help_text = mesh.cli("stat", "--help").stdout
    assert "-w, --watch" in help_text and "1s to 15m" in help_text, help_text
