"""`tulle what-if` as a user runs it, and the status its outcome stands for, to hold it
against the real request's answer."""

from __future__ import annotations

import json
import re
from typing import Any

from tests.support.mesh import Mesh


def what_if(mesh: Mesh, source: str, url: str, method: str = "GET", namespace: str = "default",
            headers: tuple[str, ...] = ()) -> dict[str, Any]:
    args = ["what-if", "--from", source, "--to", url, "--method", method, "-n", namespace,
            *(part for header in headers for part in ("-H", header)), "-o", "json"]
    result: dict[str, Any] = json.loads(mesh.cli(*args).stdout)
    return result


def status(result: dict[str, Any]) -> int:
    """The HTTP status the outcome stands for: its leading code, or 200 when the call is
    sent on (the application answers)."""
    outcome = str(result["outcome"])
    found = re.match(r"([1-5][0-9][0-9]) ", outcome)
    if found:
        return int(found.group(1))
    assert outcome.startswith("sent to"), outcome
    return 200
