"""The agent runs beside every workload: it must not load the control plane's libraries."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("pydantic", "grpc", "aiohttp", "yaml", "typer", "rich", "google.protobuf", "envoy",
         "sqlite3", "tulle.model", "tulle.xds", "tulle.controlplane", "tulle.cli",
         "cryptography", "tulle.identity.ca", "tulle.identity.tokens")


def test_agent_imports_only_what_it_needs() -> None:
    code = ("import sys, json, tulle.agent.__main__, tulle.agent.main;"
            "print(json.dumps(sorted(sys.modules)))")
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True,
                                       text=True, check=True).stdout)
    offenders = sorted(m for m in loaded for heavy in HEAVY
                       if m == heavy or m.startswith(heavy + "."))
    assert offenders == []
