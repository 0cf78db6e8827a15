"""Bug-report redaction: private keys, tokens and secret header values never leave."""

from __future__ import annotations

from typing import Any

import pytest

from tulle.bugreport.redact import Redactor
from tulle.security import REDACTED

R = Redactor.of(["api-token-0123456789", "metrics-token-987654", None, "short"],
                ["X-Api-Key"])
KEY = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIB\nAoGCCqGSM49\n-----END EC PRIVATE KEY-----\n"


@pytest.mark.parametrize(("text", "expected"), [
    ("Authorization: Bearer abc.def", f"Authorization: {REDACTED}"),
    ("authorization=Basic dXNlcjpw", f"authorization={REDACTED}"),
    ("'authorization', 'Bearer xyz'", f"'authorization', '{REDACTED}'"),
    ('"cookie": "a=b; c=d", "x": 1', f'"cookie": "{REDACTED}", "x": 1'),
    ("set-cookie: s=1\nnext line", f"set-cookie: {REDACTED}\nnext line"),
    ("'x-api-key', 'k123'", f"'x-api-key', '{REDACTED}'"),
    ("x-authorization-extra: keep", "x-authorization-extra: keep"),
    ("':authority', 'books'", "':authority', 'books'"),
    ("grpc metadata bearer q1w2e3", f"grpc metadata bearer {REDACTED}"),
    ("url?t=api-token-0123456789&x", f"url?t={REDACTED}&x"),
    ("metrics-token-987654", REDACTED),
    ("short stays", "short stays"),  # too short to be one of our secrets
    (f"before\n{KEY}after", f"before\n{REDACTED}\nafter"),
    ("-----BEGIN PRIVATE KEY-----\\nabc\\n-----END PRIVATE KEY-----", REDACTED),
    ("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----",
     "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"),
])
def test_text(text: str, expected: str) -> None:
    assert R.text(text) == expected


def test_structured_fields_at_any_depth() -> None:
    dump: dict[str, Any] = {"configs": [{"dynamic_active_secrets": [{"secret": {
        "tls_certificate": {"certificate_chain": {"inline_bytes": "Y2VydA=="},
                            "private_key": {"inline_bytes": "a2V5"}}}}]},
        {"bootstrap": {"initial_metadata": [
            {"key": "authorization", "value": "Bearer xds-secret-token"},
            {"key": "x-other", "value": "kept"}]}}],
        "agentToken": "t1", "joinToken": "t2", "headers": {"Cookie": "c", "accept": "*/*"},
        "request_headers_to_add": [{"header": {"key": "X-API-KEY", "value": "k"}},
                                   {"header": {"key": "x-other", "value": "kept"}}]}
    out = R.value(dump)
    tls = out["configs"][0]["dynamic_active_secrets"][0]["secret"]["tls_certificate"]
    assert tls["private_key"] == {"inline_bytes": REDACTED}
    assert tls["certificate_chain"] == {"inline_bytes": "Y2VydA=="}
    metadata = out["configs"][1]["bootstrap"]["initial_metadata"]
    # Call metadata is how a gRPC service authenticates: every value of it is a credential.
    assert metadata == [{"key": "authorization", "value": REDACTED},
                        {"key": "x-other", "value": REDACTED}]
    assert out["agentToken"] == REDACTED and out["joinToken"] == REDACTED
    assert out["headers"] == {"Cookie": REDACTED, "accept": "*/*"}
    assert out["request_headers_to_add"][0]["header"]["value"] == REDACTED
    assert out["request_headers_to_add"][1]["header"]["value"] == "kept"
    assert "xds-secret-token" not in repr(out)


def test_strings_inside_structures_get_the_text_pass() -> None:
    assert R.value({"log": ["x", f"key {KEY}"], "n": 3}) == {"log": ["x", f"key {REDACTED}\n"],
                                                             "n": 3}


def test_serialized_json_stays_valid_after_the_last_pass() -> None:
    import json

    data = {"line": "authorization: Bearer abc, more", "key": KEY, "t": "api-token-0123456789"}
    text = R.scrub(json.dumps(R.value(data), indent=2))
    assert json.loads(text) == {"line": f"authorization: {REDACTED}", "key": REDACTED + "\n",
                                "t": REDACTED}
