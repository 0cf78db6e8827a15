"""Shared fixtures. Every test gets its own state directory and free ports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.mesh import Mesh


@pytest.fixture
def mesh(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Mesh]:
    """A running control plane. At the end: no proxy may have NACKed anything it was sent."""
    instance = Mesh(tmp_path)
    extra = request.node.get_closest_marker("controlplane_args")
    instance.up(*(extra.args if extra else ()))
    try:
        yield instance
        if request.node.get_closest_marker("allow_nacks") is None:
            nacks = instance.nacks()
            assert not nacks, f"Envoy rejected config the control plane accepted: {nacks}"
    finally:
        instance.close()
