"""Identity rules (TUL1050-TUL1055) on hand-built evidence: each fires on its failure, names the
right resource, and stays quiet on a healthy mesh."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

import pytest

from tests.unit.model.workloads import workload
from tulle.diagnose.engine import diagnose
from tulle.diagnose.evidence import Evidence
from tulle.diagnose.rules import identity
from tulle.identity.status import CertificateStatus, IdentityStatus
from tulle.model.mesh import MeshIdentity, build_mesh
from tulle.model.parse import resource_from_manifest
from tulle.telemetry.envoy_stats import EnvoyStats, extract
from tulle.telemetry.schema import SeriesKey
from tulle.telemetry.windows import Window

NOW = 1_000_000.0
IN, BOOKS = SeriesKey("in"), SeriesKey("out", "books.default")
WEB_ID = "spiffe://tulle.local/ns/default/sa/web"
BOOKS_ID = "spiffe://tulle.local/ns/default/sa/books"


def cert(node: str, spiffe_id: str, *, expires_in: float = 3600.0, chains: bool = True,
         missed: bool = False) -> CertificateStatus:
    return CertificateStatus(node, spiffe_id, "ab12", NOW + expires_in, "issuer-1",
                             chains_to_bundle=chains, missed_renewal=missed)


def evidence(counters: Mapping[tuple[str, SeriesKey], Mapping[str, int]] | None = None,
             certs: tuple[CertificateStatus, ...] = (), strict: bool = True) -> Evidence:
    resources = [] if strict else [resource_from_manifest({
        "apiVersion": "tulle.io/v1alpha1", "kind": "Service", "metadata": {"name": "books"},
        "spec": {"mtls": {"mode": "PERMISSIVE"}}})]
    mesh = build_mesh(3, resources, [workload("books-1", "books"), workload("web-1", "web")],
                      MeshIdentity("tulle.local", "", MappingProxyType({})))
    window = Window(60.0, 60.0, MappingProxyType(dict(counters or {})), MappingProxyType({}),
                    MappingProxyType({}))
    return Evidence(mesh=mesh, window=window, now=NOW,
                    identity=IdentityStatus("tulle.local", NOW, certificates=certs))


HEALTHY = evidence({("web-1.default", BOOKS): {"rq2": 50, "tls_ok": 3},
                    ("books-1.default", IN): {"rq2": 50, "tls_ok": 3}},
                   (cert("books-1.default", BOOKS_ID), cert("web-1.default", WEB_ID)))

CALLERS_FAIL = {("web-1.default", BOOKS): {"rq5": 20, "verify_fail": 20}}

CASES: list[tuple[str, Evidence, str, str]] = [
    # (case, evidence, first code, its subject)
    ("expired certificate", evidence(CALLERS_FAIL, (
        cert("books-1.default", BOOKS_ID, expires_in=-30, missed=True),
        cert("web-1.default", WEB_ID))), "TUL1050", "proxy/books-1.default"),
    ("untrusted certificate", evidence(CALLERS_FAIL, (
        cert("books-1.default", BOOKS_ID, chains=False),)), "TUL1051", "proxy/books-1.default"),
    ("missed renewal", evidence({}, (
        cert("books-1.default", BOOKS_ID, expires_in=60, missed=True),)),
     "TUL1052", "proxy/books-1.default"),
    ("caller with a foreign certificate", evidence(
        {("books-1.default", IN): {"verify_fail": 4, "tls_ok": 2}}),
     "TUL1053", "service/books.default"),
    ("caller refuses the service's identity", evidence(
        {("web-1.default", BOOKS): {"rq5": 9, "san_fail": 9}},
        (cert("books-1.default", "spiffe://tulle.local/ns/default/sa/intruder"),)),
     "TUL1054", "service/books.default"),
    ("plaintext to STRICT", evidence({("books-1.default", IN): {"tls_err": 3}}),
     "TUL1055", "service/books.default"),
    ("no client certificate to STRICT", evidence({("books-1.default", IN): {"no_cert": 2}}),
     "TUL1055", "service/books.default"),
]


@pytest.mark.parametrize(("case", "given", "code", "subject"), CASES,
                         ids=[c[0] for c in CASES])
def test_the_failure_is_found_first(case: str, given: Evidence, code: str,
                                    subject: str) -> None:
    result = diagnose(given, rules=identity.RULES)
    assert result.rule_errors == ()
    assert result.findings, case
    first = result.findings[0]
    assert (first.code, first.subject) == (code, subject), [f.code for f in result.findings]
    assert first.fix and first.evidence


def test_a_healthy_mesh_has_no_identity_finding() -> None:
    assert diagnose(HEALTHY, rules=identity.RULES).findings == ()


def test_expired_names_the_failing_callers() -> None:
    given = evidence(CALLERS_FAIL, (cert("books-1.default", BOOKS_ID, expires_in=-30),))
    (found,) = [f for f in diagnose(given).findings if f.code == "TUL1050"]
    assert "proxy/web-1.default" in found.related and "service/books.default" in found.related
    assert any("web-1.default -> books.default: 20 failed TLS" in line
               for line in found.evidence)


def test_a_mesh_caller_failing_explains_connection_errors_at_the_callee() -> None:
    # An expired callee also counts the callers' aborted handshakes as connection errors:
    # that is not plaintext.
    given = evidence({**CALLERS_FAIL, ("books-1.default", IN): {"tls_err": 20}},
                     (cert("books-1.default", BOOKS_ID, expires_in=-5),))
    assert "TUL1055" not in {f.code for f in diagnose(given, rules=identity.RULES).findings}


def test_permissive_services_accept_plaintext() -> None:
    given = evidence({("books-1.default", IN): {"tls_err": 3}}, strict=False)
    assert diagnose(given, rules=identity.RULES).findings == ()


def test_mismatch_names_the_instance_with_the_wrong_identity() -> None:
    given = evidence({("web-1.default", BOOKS): {"san_fail": 2}},
                     (cert("books-1.default", "spiffe://tulle.local/ns/default/sa/intruder"),))
    (found,) = diagnose(given, rules=identity.RULES).findings
    assert "proxy/books-1.default" in found.related
    assert any(BOOKS_ID in line for line in found.evidence)


@pytest.mark.parametrize(("stat", "field"), [
    ("listener.127.0.0.1_15006.ssl.fail_verify_error", "verify_fail"),
    ("listener.127.0.0.1_15006.ssl.fail_verify_no_cert", "no_cert"),
    ("listener.127.0.0.1_15006.ssl.fail_verify_san", "san_fail"),
    ("listener.127.0.0.1_15006.ssl.connection_error", "tls_err"),
])
def test_inbound_handshake_failures_are_extracted_by_reason(stat: str, field: str) -> None:
    assert extract(EnvoyStats({stat: 3}))[IN][field] == 3


@pytest.mark.parametrize(("refused", "severity"), [(1, "warning"), (9, "warning"),
                                                   (10, "error"), (40, "error")])
def test_plaintext_to_strict_severity_grows_with_the_refused(refused: int,
                                                             severity: str) -> None:
    given = evidence({("books-1.default", IN): {"tls_err": refused}})
    (found,) = diagnose(given, rules=identity.RULES).findings
    assert (found.code, found.severity.label) == ("TUL1055", severity)
