"""`tulle tap` table lines: one per request, readable when a field is missing."""

from __future__ import annotations

from typing import Any

import pytest

from tulle.cli.cmd_tap import format_event

WEB, BOOKS = "spiffe://tulle.local/ns/default/sa/web", "spiffe://tulle.local/ns/default/sa/books"
BASE: dict[str, Any] = {
    "time": "2026-11-23T14:13:55.761Z", "direction": "outbound", "source": WEB,
    "destination": BOOKS, "method": "GET", "authority": "books", "path": "/list?page=2",
    "status": 200, "latencyMs": 3, "bytesReceived": 0, "bytesSent": 448, "flags": "-",
    "mtls": True, "tlsVersion": "TLSv1.2", "upstreamCluster": "outbound|books.default",
    "sourceAddress": "127.0.0.1:40000"}

CASES: list[tuple[str, dict[str, Any], str]] = [
    ("denied by an AuthorizationPolicy, on the callee's side",
     {"direction": "inbound", "status": 403, "flags": "RBAC", "mtls": True,
      "details": "rbac_access_denied_matched_policy[AuthorizationPolicy:default/no-web:0]"},
     f"14:13:55.761Z  in  {WEB} -> {BOOKS}  GET  books  /list?page=2  403  3ms  0/448  "
     "RBAC (denied by an AuthorizationPolicy)  mTLS TLSv1.2  "
     "denied-by: AuthorizationPolicy:default/no-web:0"),
    ("a dry run would deny it",
     {"direction": "inbound", "wouldDeny": "AuthorizationPolicy:default/lockdown:ops"},
     f"14:13:55.761Z  in  {WEB} -> {BOOKS}  GET  books  /list?page=2  200  3ms  0/448  -  "
     "mTLS TLSv1.2  would-deny: AuthorizationPolicy:default/lockdown:ops"),
    ("a served request", {},
     f"14:13:55.761Z  out  {WEB} -> {BOOKS}  GET  books  /list?page=2  200  3ms  0/448  -  "
     "mTLS TLSv1.2"),
    ("rejected before any connection: the service meant",
     {"destination": None, "status": 503, "flags": "UO", "mtls": None, "tlsVersion": None},
     f"14:13:55.761Z  out  {WEB} -> (books.default)  GET  books  /list?page=2  503  3ms  "
     "0/448  UO (upstream overflow (circuit breaker))  no connection: upstream overflow "
     "(circuit breaker)"),
    ("no healthy upstream: not plaintext",
     {"destination": None, "status": 503, "flags": "UH", "mtls": None, "tlsVersion": None},
     f"14:13:55.761Z  out  {WEB} -> (books.default)  GET  books  /list?page=2  503  3ms  "
     "0/448  UH (no healthy upstream)  no connection: no healthy upstream"),
    ("a connect failure, then retries used up",
     {"destination": None, "status": 503, "flags": "UF,URX", "mtls": None,
      "tlsVersion": None},
     f"14:13:55.761Z  out  {WEB} -> (books.default)  GET  books  /list?page=2  503  3ms  "
     "0/448  UF,URX (upstream connection failure, upstream retry limit exceeded)  "
     "no connection: upstream connection failure"),
    ("a timeout over a plaintext connection stays plaintext",
     {"status": 504, "flags": "UT", "mtls": False, "tlsVersion": None},
     f"14:13:55.761Z  out  {WEB} -> {BOOKS}  GET  books  /list?page=2  504  3ms  "
     "0/448  UT (upstream request timeout)  plaintext"),
    ("plaintext caller on the called side",
     {"direction": "inbound", "source": None, "mtls": False, "tlsVersion": None,
      "upstreamCluster": "inbound|8080"},
     f"14:13:55.761Z  in  127.0.0.1:40000 -> {BOOKS}  GET  books  /list?page=2  200  3ms  "
     "0/448  -  plaintext"),
    ("a gRPC failure inside HTTP 200: its status and message beside the 200",
     {"path": "/g.Greeter/Hello", "grpcStatus": "UNAVAILABLE",
      "grpcMessage": "greeter-2 is flaky"},
     f"14:13:55.761Z  out  {WEB} -> {BOOKS}  GET  books  /g.Greeter/Hello  200 gRPC "
     "UNAVAILABLE (14) 'greeter-2 is flaky'  3ms  0/448  -  mTLS TLSv1.2"),
    ("a gRPC success", {"grpcStatus": "OK"},
     f"14:13:55.761Z  out  {WEB} -> {BOOKS}  GET  books  /list?page=2  200 gRPC OK (0)  3ms  "
     "0/448  -  mTLS TLSv1.2"),
    ("a call to an ExternalService",
     {"destination": None, "authority": "api.example.com", "mtls": False, "tlsVersion": None,
      "upstreamCluster": "external|api.example.com|443"},
     f"14:13:55.761Z  out  {WEB} -> api.example.com:443 (external)  GET  api.example.com  "
     "/list?page=2  200  3ms  0/448  -  plaintext"),
    ("a call passed through under ALLOW_ANY",
     {"destination": None, "authority": "x.example:8080", "mtls": False, "tlsVersion": None,
      "upstreamCluster": "passthrough"},
     f"14:13:55.761Z  out  {WEB} -> (passthrough: ALLOW_ANY)  GET  x.example:8080  "
     "/list?page=2  200  3ms  0/448  -  plaintext"),
    ("nothing known", dict.fromkeys(BASE),
     "-  out  - -> -  -  -  -  -  -  -/-  -  plaintext"),
]


@pytest.mark.parametrize(("changes", "line"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_format_event(changes: dict[str, Any], line: str) -> None:
    assert format_event(BASE | changes) == line
