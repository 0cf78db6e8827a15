"""Join tokens for other hosts: made, listed and revoked from the CLI; bad input changes
nothing; only the control plane's operator (the API token) can make them."""

from __future__ import annotations

import json
import stat
import urllib.error
import urllib.request

import pytest

from tests.support.mesh import Mesh

pytestmark = pytest.mark.envoy


def test_tokens_are_made_listed_and_revoked(mesh: Mesh) -> None:
    made = json.loads(mesh.cli("token", "create", "--service", "books", "--ttl", "15m",
                               "-o", "json").stdout)
    assert made["token"].startswith(f"tj1.{made['id']}.")
    assert made["caFingerprint"].startswith("sha256:") and len(made["caFingerprint"]) == 71
    assert made["controlPlane"] == f"https://127.0.0.1:{mesh.identity_port}"
    assert f"--join-token {made['token']}" in made["command"]
    assert 890 < made["expiresAt"] - made["createdAt"] <= 900

    text = mesh.cli("token", "create", "--service", "web", "-n", "shop").stdout
    assert "join token" in text and "for service web in namespace shop" in text
    assert "tulle run --control-plane https://" in text and "--namespace shop" in text

    listed = mesh.cli("token", "list").stdout
    assert "ID" in listed and "books" in listed and "shop" in listed
    assert made["token"].split(".")[2] not in listed  # the secret is shown once, never again
    # Only digests are kept, in private files.
    directory = mesh.state_dir / "joins"
    for path in directory.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert made["token"].split(".")[2] not in path.read_text()

    revoked = json.loads(mesh.cli("token", "revoke", made["id"], "-o", "json").stdout)
    assert revoked["state"] == "revoked"
    states = {t["id"]: t["state"] for t in json.loads(
        mesh.cli("token", "list", "-o", "json").stdout)["tokens"]}
    assert states[made["id"]] == "revoked" and list(states.values()).count("valid") == 1


@pytest.mark.parametrize(("args", "says"), [
    (("--service", "Books_1"), "service 'Books_1'"),
    (("--service", "books", "--ttl", "forever"), "--ttl 'forever' is not a duration"),
    (("--service", "books", "--ttl", "30d"), "lifetime must be between"),
])
def test_bad_token_requests_say_why_and_make_nothing(mesh: Mesh, args: tuple[str, ...],
                                                     says: str) -> None:
    result = mesh.cli("token", "create", *args, check=False)
    assert result.returncode != 0 and says in result.stderr and "hint:" in result.stderr
    assert json.loads(mesh.cli("token", "list", "-o", "json").stdout)["tokens"] == []


def test_only_the_operator_makes_tokens(mesh: Mesh) -> None:
    for token in ("", "wrong-token"):
        request = urllib.request.Request(
            f"http://127.0.0.1:{mesh.api_port}/v1/join-tokens", method="POST",
            data=b'{"service": "books"}',
            headers={"Authorization": f"Bearer {token}"} if token else {})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=5)
        assert refused.value.code == 401
    assert json.loads(mesh.cli("token", "list", "-o", "json").stdout)["tokens"] == []
