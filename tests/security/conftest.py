"""Fixtures of the security suite: meshes reachable by other local users except where tulle
itself keeps them out (see tests/security/support.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.security.support import exposed_root, require_root
from tests.support.mesh import Mesh


@pytest.fixture
def exposed_mesh(request: pytest.FixtureRequest) -> Iterator[Mesh]:
    """A running control plane whose state directory sits under a 0755 directory."""
    require_root()
    with exposed_root() as root:
        instance = Mesh(root)
        extra = request.node.get_closest_marker("controlplane_args")
        instance.up(*(extra.args if extra else ()))
        try:
            yield instance
        finally:
            instance.close()
