"""The small meshes most behaviour tests start from."""

from __future__ import annotations

import sys

from tests.support.mesh import ECHO_APP, Mesh, wait_for
from tests.support.ports import free_port

# An HTTPRoute for books with a named rule (/search) and a catch-all rule (index 1).
# books' two versions as subsets: the workloads started with --version v1 and v2.
BOOKS_VERSIONS = """\
apiVersion: tulle.io/v1alpha1
kind: Service
metadata: {name: books-v1}
spec: {selector: {service: books, version: v1}}
---
apiVersion: tulle.io/v1alpha1
kind: Service
metadata: {name: books-v2}
spec: {selector: {service: books, version: v2}}
"""

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


def never_listening(mesh: Mesh, service: str = "bad") -> tuple[int, int]:
    """``service``-1, whose application listens on another port than its `--port` (a port
    mistake: it never becomes ready), and web-1 calling it. Returns (web-1's --upstream port
    leading to it, the registered port nothing listens on)."""
    registered, actual = free_port(), free_port()
    mesh.run(service, name=f"{service}-1", port=registered, wait=False,
             command=[sys.executable, str(ECHO_APP), str(actual)])
    upstream = free_port()
    mesh.run("web", name="web-1", extra=("--upstream", f"{service}:{upstream}"))
    wait_for(f"{service}-1 to register",
             lambda: any(w["name"] == f"{service}-1" for w in mesh.api.get("/v1/workloads")))
    return upstream, registered
