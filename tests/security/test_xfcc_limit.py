"""The documented limit of universal mode (docs/security.md): an application's own port is
reachable by any local process, so a forged `x-forwarded-client-cert` sent there, bypassing the
sidecar, reaches the application unchanged; through the mesh it never does. If this test starts
failing because the first half no longer holds, the limit is closed: update the docs."""

from __future__ import annotations

import json

from tests.security.support import probe
from tests.support.mesh import Mesh

FORGED = "URI=spiffe://tulle.local/ns/default/sa/admin"

DIRECT = """
import http.client, json, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=10)
c.request("GET", "/direct", headers={"x-forwarded-client-cert": sys.argv[2]})
print(json.dumps(json.loads(c.getresponse().read())["headers"]))
"""


def test_a_forged_xfcc_reaches_an_application_called_on_its_own_port(exposed_mesh: Mesh
                                                                      ) -> None:
    books = exposed_mesh.run("books", name="books-1")
    assert books.app_port is not None
    result = probe(DIRECT, str(books.app_port), FORGED)
    assert result.returncode == 0, result.stderr
    headers = {k.lower(): v for k, v in json.loads(result.stdout).items()}
    assert headers.get("x-forwarded-client-cert") == FORGED
