"""TUL1033: a rollout held by an edit, a rollback, or a missing instance is named, with its
status and the fix; one that moves, or just started, is not."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.unit.model.documents import parse
from tulle.diagnose.engine import WHOLE_MESH
from tulle.diagnose.evidence import Evidence
from tulle.diagnose.rules.rollouts import rollout_held
from tulle.model.kinds import ROLLOUT
from tulle.model.mesh import build_mesh
from tulle.model.meta import ResourceKey
from tulle.model.parse import Document, parse_document
from tulle.model.rollout import Move, RolloutStatus, route_spec, route_text
from tulle.store.base import Change

SPEC = {"service": "books", "stable": "v1", "canary": "v2",
        "steps": [{"weight": 20, "pause": "1m"}, {"weight": 50, "pause": "1m"}]}
KEY = ResourceKey(ROLLOUT.kind, "default", "books")


def evidence(status: RolloutStatus | None, route_weight: int | None = None,
             applied_ago: float = 3600.0) -> Evidence:
    metadata: dict[str, Any] = {"name": "books"}
    if status is not None:
        metadata["annotations"] = {"tulle.io/rollout-status": status.to_json()}
    documents = [{"apiVersion": "tulle.io/v1alpha1", "kind": "Service",
                  "metadata": {"name": "books"}, "spec": {}},
                 {"apiVersion": "tulle.io/v1alpha1", "kind": "Rollout", "metadata": metadata,
                  "spec": SPEC}]
    for version in ("v1", "v2"):
        documents.append({"apiVersion": "tulle.io/v1alpha1", "kind": "Service",
                          "metadata": {"name": f"books-{version}"},
                          "spec": {"selector": {"service": "books", "version": version}}})
    if route_weight is not None:
        spec_model = parse_document(Document("x", documents[1])).spec
        documents.append({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
                          "metadata": {"name": "books"},
                          "spec": route_spec(spec_model, route_weight)})
    resources = parse("\n---\n".join(json.dumps(d) for d in documents))
    now = 10_000.0
    history = (Change(1, now - applied_ago, KEY, "created", None, {}),)
    return Evidence(mesh=build_mesh(1, resources, ()), history=history, now=now)


STEP = Move(9000.0, "Progressing", 0, 20, "step 1 of 2: 20 % to v2")
BACK = Move(9100.0, "RolledBack", 0, 0, "rolled back at step 1: canary success rate 95.00 %",
            {"canary": {"requests": 40, "failed": 2}})


@pytest.mark.parametrize(("status", "weight", "ago", "words"), [
    (RolloutStatus().moved(STEP, "{}"), 20, 3600.0, None),  # moving
    (RolloutStatus(), None, 3600.0, None),  # just applied, nothing said yet
    (RolloutStatus("Stopped", 0, 20, message="HTTPRoute default/books was changed by someone "
                   "else", moves=(STEP,)), 10, 3600.0, "Rollout default/books stopped"),
    (RolloutStatus().moved(STEP, "{}").moved(BACK, "{}"), 0, 3600.0,
     "rolled v2 back: rolled back at step 1: canary success rate 95.00 %"),
    (RolloutStatus(message="waiting: no ready instance of books version v2 (canary)"), None,
     3600.0, "has not started: waiting: no ready instance of books version v2"),
    (RolloutStatus(message="waiting: no ready instance of books version v2 (canary)"), None,
     10.0, None),  # applied seconds ago: starting, not stuck
    (RolloutStatus("Promoted", 1, 100), 100, 3600.0, None),
])
def test_a_held_rollout_is_named(status: RolloutStatus, weight: int | None, ago: float,
                                 words: str | None) -> None:
    found = list(rollout_held(evidence(status, weight, ago), WHOLE_MESH))
    if words is None:
        assert found == []
        return
    [finding] = found
    assert finding.code == "TUL1033" and finding.subject == "rollout/books.default"
    assert words in finding.cause, finding.cause
    assert "service/books.default" in finding.related
    if status.phase == "Stopped":
        assert "`tulle rollout resume books -n default`" in finding.fix
        assert any("the route now: " + route_text(route_spec(
            evidence(status, weight).mesh.resources[KEY].spec, 10)) == e
            for e in finding.evidence), finding.evidence
