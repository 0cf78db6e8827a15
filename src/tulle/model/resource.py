"""A validated resource: typed spec plus the manifest it was read from."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from tulle.model.kinds import KindInfo
from tulle.model.meta import ObjectMeta, ResourceKey


@dataclass(frozen=True)
class Resource:
    info: KindInfo
    meta: ObjectMeta
    spec: Any
    # The canonical manifest (apiVersion, kind, metadata, spec) as stored and shown by `get`.
    manifest: Mapping[str, Any] = field(compare=False, hash=False, repr=False)

    @property
    def kind(self) -> str:
        return self.info.kind

    @cached_property
    def key(self) -> ResourceKey:
        # Cached: sorting and indexing read it several times per resource, per rebuild.
        return ResourceKey(self.info.kind, self.meta.namespace, self.meta.name)

    def __str__(self) -> str:
        return str(self.key)
