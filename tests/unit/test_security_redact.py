"""``tulle.security.redact``: secrets found by where they sit in config, whatever they look like.

The agent applies it to every config_dump it serves, the control plane to the config it intends,
bug reports to every JSON file they archive."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tulle.security import REDACTED, redact

# The ADS section of a sidecar's bootstrap, as Envoy's config_dump shows it.
ADS = {"api_type": "DELTA_GRPC", "grpc_services": [{
    "envoy_grpc": {"cluster_name": "tulle-xds"},
    "initial_metadata": [{"key": "authorization", "value": "Bearer xds-credential-1234"}]}]}
# A tap's gRPC access logger, as it sits in a listener.
TAP_LOGGER = {"name": "envoy.access_loggers.http_grpc", "typed_config": {
    "@type": "type.googleapis.com/envoy.extensions.access_loggers.grpc.v3."
             "HttpGrpcAccessLogConfig",
    "common_config": {"log_name": "tulle-tap", "grpc_service": {
        "envoy_grpc": {"cluster_name": "tulle-xds"},
        "initial_metadata": [{"key": "authorization", "value": "Bearer 0123abcd" * 4}]}}}}


@pytest.mark.parametrize(("data", "expected"), [
    # gRPC call metadata: every value, whatever its name; the names stay.
    (ADS, {**ADS, "grpc_services": [{
        "envoy_grpc": {"cluster_name": "tulle-xds"},
        "initial_metadata": [{"key": "authorization", "value": REDACTED}]}]}),
    ({"initial_metadata": [{"key": "x-api-key", "value": "k"},
                           {"key": "x-bin", "raw_value": "AAEC"}]},
     {"initial_metadata": [{"key": "x-api-key", "value": REDACTED},
                           {"key": "x-bin", "raw_value": REDACTED}]}),
    ({"initialMetadata": [{"key": "authorization", "value": "Bearer t"}]},
     {"initialMetadata": [{"key": "authorization", "value": REDACTED}]}),
    ({"initial_metadata": ["odd"]}, {"initial_metadata": [REDACTED]}),
    # Fields whose name says they are secret, at any depth and in any case style.
    # Of an Envoy data source in such a field, where it is stays and what it holds goes.
    ({"a": [{"private_key": {"filename": "/k"}}]}, {"a": [{"private_key": {"filename": "/k"}}]}),
    ({"private_key": {"inline_bytes": "S0VZ"}}, {"private_key": {"inline_bytes": REDACTED}}),
    ({"private_key": {"filename": "/k", "inline_string": "KEY"}},
     {"private_key": {"filename": "/k", "inline_string": REDACTED}}),
    ({"privateKey": "x", "xdsToken": "y", "agent_token": "z", "password": "p"},
     {"privateKey": REDACTED, "xdsToken": REDACTED, "agent_token": REDACTED,
      "password": REDACTED}),
    # Secret headers: as a key/value pair (Envoy's HeaderValue), or as a mapping key.
    ({"header": {"key": "Authorization", "value": "Basic dXNlcg=="}},
     {"header": {"key": "Authorization", "value": REDACTED}}),
    ({"name": "cookie", "values": ["a=b"]}, {"name": "cookie", "values": REDACTED}),
    ({"headers": {"Set-Cookie": "s=1", "accept": "*/*"}},
     {"headers": {"Set-Cookie": REDACTED, "accept": "*/*"}}),
    # What is not secret stays as it is.
    ({"header": {"key": "x-request-id", "value": "r1"}},
     {"header": {"key": "x-request-id", "value": "r1"}}),
    ({"certificate_chain": {"inline_bytes": "Y2VydA=="}, "key_path": "/identity/key.pem",
      "secret": {"name": "identity"}, "token_bucket": {"max_tokens": 10}},
     {"certificate_chain": {"inline_bytes": "Y2VydA=="}, "key_path": "/identity/key.pem",
      "secret": {"name": "identity"}, "token_bucket": {"max_tokens": 10}}),
    ("Bearer free-text", "Bearer free-text"),  # free text is the caller's business
    ([1, None, True, 2.5], [1, None, True, 2.5]),
])
def test_redact(data: Any, expected: Any) -> None:
    assert redact(data) == expected


def test_a_tap_loggers_token_is_found_where_it_sits_in_a_listener() -> None:
    listener = {"filter_chains": [{"filters": [{"typed_config": {"access_log": [TAP_LOGGER]}}]}]}
    out = json.dumps(redact(listener))
    assert "0123abcd" not in out and REDACTED in out
    assert "tulle-tap" in out and "tulle-xds" in out


def test_the_input_is_not_changed() -> None:
    data = {"initial_metadata": [{"key": "authorization", "value": "Bearer t"}]}
    redact(data)
    assert data["initial_metadata"][0]["value"] == "Bearer t"


def test_more_secret_headers_and_a_text_pass() -> None:
    data = {"header": {"key": "x-api-key", "value": "k"}, "log": "x-api-key: k"}
    assert redact(data, headers=("x-api-key",), text=str.upper) == {
        "header": {"key": "X-API-KEY", "value": REDACTED}, "log": "X-API-KEY: K"}
