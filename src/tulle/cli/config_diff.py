"""`proxy-config --diff`: what the control plane intends for a proxy against what it has.

Per xDS type and resource name: missing (intended, not in Envoy), extra (in Envoy, not
intended) or different. Envoy's dump also shows defaults it filled in, so only the fields
present in the intended resource are compared.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from typing import Any

from tulle.cli.config_dump import strip_private_keys


@dataclass(frozen=True)
class Difference:
    type: str  # "CDS"...
    name: str
    kind: str  # "missing", "extra" or "different"
    diff: str = ""  # a unified diff of the normalized JSON, for "different"

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "name": self.name, "kind": self.kind, "diff": self.diff}


def normalize(value: Any) -> Any:
    """Integral floats as ints: Python writes 1.0 where Envoy writes 1."""
    if isinstance(value, dict):
        return {k: normalize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalize(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def project(actual: Any, intended: Any) -> Any:
    """``actual`` cut down to the fields ``intended`` has (recursively)."""
    if isinstance(actual, dict) and isinstance(intended, dict):
        return {k: project(actual[k], v) for k, v in intended.items() if k in actual}
    if isinstance(actual, list) and isinstance(intended, list) and len(actual) == len(intended):
        return [project(a, i) for a, i in zip(actual, intended, strict=True)]
    return actual


def _text(value: Any) -> list[str]:
    return json.dumps(value, indent=2, sort_keys=True).splitlines()


def compare(intended: dict[str, dict[str, Any]],
            actual: dict[str, dict[str, Any]]) -> list[Difference]:
    """Both sides are {type: {name: resource JSON}}."""
    differences = []
    for kind in sorted(set(intended) | set(actual)):
        want = intended.get(kind, {})
        have = actual.get(kind, {})
        for name in sorted(set(want) | set(have)):
            if name not in have:
                differences.append(Difference(kind, name, "missing"))
            elif name not in want:
                differences.append(Difference(kind, name, "extra"))
            else:
                # Envoy redacts private keys in its dump; they are never compared.
                expected = normalize(strip_private_keys(want[name]))
                got = project(normalize(strip_private_keys(have[name])), expected)
                if expected != got:
                    diff = "\n".join(difflib.unified_diff(
                        _text(expected), _text(got), f"intended/{kind}/{name}",
                        f"envoy/{kind}/{name}", lineterm=""))
                    differences.append(Difference(kind, name, "different", diff))
    return differences
