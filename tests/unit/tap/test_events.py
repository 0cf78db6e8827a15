"""Access-log entries become tap events: typed like the access-log file, redacted again."""

from __future__ import annotations

from envoy.data.accesslog.v3 import accesslog_pb2

from tulle.tap.events import EVENT_FIELDS, decode, redact, typed

REDACTED = ("authorization", "cookie", "set-cookie", "x-api-key")


def entry(**tags: str) -> accesslog_pb2.HTTPAccessLogEntry:
    message = accesslog_pb2.HTTPAccessLogEntry()
    message.common_properties.custom_tags.update(tags)
    return message


def test_fields_get_their_types_and_absent_ones_are_none() -> None:
    event = decode("web-1.default", entry(**{
        "direction": "outbound", "status": "503", "latencyMs": "12", "bytesSent": "0",
        "mtls": "true", "flags": "UO", "method": "GET", "path": "/a?b=c",
        "requestHeaders.user-agent": "curl/8"}), REDACTED)
    assert (event["status"], event["latencyMs"], event["bytesSent"]) == (503, 12, 0)
    assert event["mtls"] is True and event["flags"] == "UO"
    assert event["destination"] is None and event["bytesReceived"] is None
    assert set(event) == {*EVENT_FIELDS, "requestHeaders", "responseHeaders"}
    assert event["requestHeaders"]["user-agent"] == "curl/8"
    # Every captured header is there, as in the file: None when the request had none.
    assert event["requestHeaders"]["authorization"] is None
    assert event["responseHeaders"]["set-cookie"] is None


def test_the_sender_is_the_authenticated_proxy_not_what_the_entry_claims() -> None:
    assert decode("web-1.default", entry(workload="books-1.default"), REDACTED)[
        "workload"] == "web-1.default"


def test_secret_values_are_replaced_even_if_a_sidecar_sent_them() -> None:
    event = decode("web-1.default", entry(**{
        "requestHeaders.authorization": "Bearer s3cret",
        "requestHeaders.X-Api-Key": "k3y",
        "responseHeaders.set-cookie": "[redacted]"}), REDACTED)
    assert event["requestHeaders"]["authorization"] == "[redacted]"
    assert event["requestHeaders"]["X-Api-Key"] == "[redacted]"
    assert "s3cret" not in repr(event) and "k3y" not in repr(event)


def test_redact_keeps_absent_headers_absent() -> None:
    assert redact({"cookie": None, "accept": "x"}, frozenset({"cookie"})) == {
        "accept": "x", "cookie": None}


def test_typed() -> None:
    assert typed("-", "int") is None and typed("x", "int") is None
    assert typed("false", "bool") is False and typed("NULL", "bool") is None
    assert typed("-", "str") == "-" and typed("", "str") is None


def test_a_grpc_message_reads_as_the_application_wrote_it() -> None:
    event = decode("web-1.default", entry(
        grpcStatus="UNAVAILABLE", grpcMessage="greeter-2%20is%20flaky%3A%20100%25"), REDACTED)
    assert (event["grpcStatus"], event["grpcMessage"]) == ("UNAVAILABLE",
                                                           "greeter-2 is flaky: 100%")
    plain = decode("web-1.default", entry(status="200"), REDACTED)
    assert (plain["grpcStatus"], plain["grpcMessage"]) == (None, None)
