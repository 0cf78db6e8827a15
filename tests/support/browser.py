"""A real browser for the dashboard's tests: Debian's Chromium, headless, driven by
Playwright (its own browser download is never used). Screenshots go to artifacts/dashboard/,
the folder the README names."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support.mesh import Mesh

REPOSITORY = Path(__file__).resolve().parents[2]
SHOTS = REPOSITORY / "artifacts" / "dashboard"


@contextmanager
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium")
    assert executable, "Debian's chromium is needed (scripts/test.sh installs it)"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, headless=True,
                                              args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


def login_link(mesh: Mesh) -> str:
    """A one-time login link, as `tulle dashboard` prints it."""
    return str(json.loads(mesh.cli("dashboard", "--no-open", "-o", "json").stdout)["url"])


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
