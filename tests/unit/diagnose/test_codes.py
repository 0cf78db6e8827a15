"""The finding-code registry: unique, in range, documented, and used as registered."""

from __future__ import annotations

import re
from pathlib import Path

from tulle.diagnose.codes import CODES, lookup

DOCS = Path(__file__).resolve().parents[3] / "docs" / "diagnostics"


def test_codes_and_names_are_unique() -> None:
    codes = [c.code for c in CODES]
    names = [c.name for c in CODES]
    assert len(codes) == len(set(codes)), codes
    assert len(names) == len(set(names)), names


def test_codes_are_in_diagnose_range() -> None:
    for entry in CODES:
        assert re.fullmatch(r"TUL1\d{3}", entry.code), entry.code
        assert 1001 <= int(entry.code[3:]) <= 1099, entry.code
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", entry.name), entry.name


def test_every_code_has_a_page_and_an_index_line() -> None:
    index = (DOCS / "findings.md").read_text()
    for entry in CODES:
        page = DOCS / f"{entry.code}.md"
        assert page.exists(), f"{entry.code} has no page {page}"
        text = page.read_text()
        assert text.startswith(f"# {entry.code}: {entry.name}\n"), f"{page}: wrong title line"
        for section in ("## Cause", "## Evidence", "## Fix"):
            assert section in text, f"{page} lacks {section}"
        assert f"[{entry.code}]({entry.code}.md)" in index, f"{entry.code} not in findings.md"


def test_no_page_without_a_code() -> None:
    registered = {c.code for c in CODES}
    pages = {p.stem for p in DOCS.glob("TUL1*.md")}
    assert pages <= registered, pages - registered


def test_lookup_names_an_unknown_code() -> None:
    assert lookup("TUL1001").name == "no-healthy-endpoints"
    try:
        lookup("TUL1999")
    except KeyError as exc:
        assert "TUL1999" in str(exc)
    else:
        raise AssertionError("an unknown code was accepted")
