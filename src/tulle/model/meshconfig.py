"""Mesh: settings for the whole mesh. One resource, named "default", not namespaced."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, ClassVar

from annotated_types import Len

from tulle.model.service import MtlsSettings
from tulle.model.spec_config import SPEC_CONFIG

MESH_NAME = "default"
DEFAULT_WORKLOAD_LIFETIME_S = 24 * 3600.0
MIN_WORKLOAD_LIFETIME_S = 2.0
MAX_WORKLOAD_LIFETIME_S = 90 * 24 * 3600.0

_DURATION = re.compile(r"(?P<value>\d+(\.\d+)?)(?P<unit>ms|s|m|h|d)")  # for fullmatch
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}

Duration = Annotated[str, Len(2, 32)]


def parse_duration(text: str) -> float | None:
    """Seconds in "90s", "15m", "24h", "1.5d"; None when it is not a duration."""
    match = _DURATION.fullmatch(text)
    return float(match["value"]) * _UNITS[match["unit"]] if match else None


@dataclass(frozen=True)
class CertificateSettings:
    __pydantic_config__: ClassVar = SPEC_CONFIG

    # Lifetime of workload certificates; agents renew at about half of it.
    workload_lifetime: Duration = "24h"


@dataclass(frozen=True)
class MeshSpec:
    __pydantic_config__: ClassVar = SPEC_CONFIG

    mtls: MtlsSettings = MtlsSettings(mode="STRICT")
    certificates: CertificateSettings = CertificateSettings()

    @property
    def workload_lifetime_s(self) -> float:
        return parse_duration(self.certificates.workload_lifetime) or DEFAULT_WORKLOAD_LIFETIME_S
