"""The small meshes most behaviour tests start from."""

from __future__ import annotations

from tests.support.mesh import Mesh
from tests.support.ports import free_port

# An HTTPRoute for books with a named rule (/search) and a catch-all rule (index 1).
SEARCH_ROUTE = """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: books}
spec:
  parentRefs: [{name: books}]
  rules:
  - name: search
    matches: [{path: {type: PathPrefix, value: /search}}]
    backendRefs: [{name: books}]
  - backendRefs: [{name: books}]
"""


def books_and_web(mesh: Mesh) -> int:
    """books-1, and web-1 whose --upstream port (returned) leads to books."""
    mesh.run("books", name="books-1")
    port = free_port()
    mesh.run("web", name="web-1", extra=("--upstream", f"books:{port}"))
    mesh.wait_endpoints("web-1", "books", {"books-1"})
    return port
