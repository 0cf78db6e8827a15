"""The agent's keys: made by a child process (openssl, else Python), private from the start."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tulle.agent import identity

SPIFFE_ID = "spiffe://tulle.local/ns/default/sa/books"


@pytest.mark.parametrize("tool", ["openssl", "python"])
def test_key_and_csr(tool: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if tool == "python":
        monkeypatch.setattr(identity.shutil, "which", lambda name: None)
    key_file = tmp_path / "key-1.pem"
    csr_pem = asyncio.run(identity._make_csr(key_file, SPIFFE_ID))
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    key = serialization.load_pem_private_key(key_file.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    csr = x509.load_pem_x509_csr(csr_pem.encode())
    assert csr.is_signature_valid
    names = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.UniformResourceIdentifier) == [SPIFFE_ID]
    assert len(list(names)) == 1
    assert csr.public_key().public_numbers() == key.public_key().public_numbers()  # type: ignore[union-attr]
