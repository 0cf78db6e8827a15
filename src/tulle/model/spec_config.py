"""The validation settings every resource spec shares.

Specs are plain frozen dataclasses. Each carries this configuration so that pydantic, used only
at the edge where YAML enters (``tulle.model.parse``), validates them strictly: unknown fields
are errors, and YAML's camelCase field names map to Python's snake_case.
"""

from __future__ import annotations

from typing import Any

# Kubernetes style keeps acronyms whole: sourceIP, not sourceIp.
_ACRONYMS = {"ip": "IP", "id": "ID", "url": "URL", "ttl": "TTL"}


def to_camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(_ACRONYMS.get(part, part.capitalize()) for part in rest)


# A plain dict (pydantic's ConfigDict is a TypedDict) so spec modules need not import pydantic.
SPEC_CONFIG: Any = {
    "extra": "forbid",
    "alias_generator": to_camel,
    "populate_by_name": True,
}
