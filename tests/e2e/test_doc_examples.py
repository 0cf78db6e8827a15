"""Every example in README.md and docs/ works as written, against a real mesh.

- YAML: the resource blocks of each page, applied in order to a fresh mesh, are accepted. A
  page whose examples need something first says so, in a block of its own that comes first.
- Commands: each `tulle` (and `promtool`) line of a fenced block that is complete as written
  (no NAME, [options], a|b or ...) runs and exits 0, in a mesh with a running service, from a
  directory holding the files earlier blocks of the page name.
The README's Quick start has its own test (test_quick_start.py).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.docblocks import PAGES, Block, blocks, commands, runnable, shell_env
from tests.support.mesh import Mesh

pytestmark = pytest.mark.envoy

def _yaml_blocks(page: Path) -> list[Block]:
    return [b for b in blocks(page) if b.language == "yaml" and "kind:" in b.text]


YAML_PAGES = [p for p in PAGES if _yaml_blocks(p)]


@pytest.mark.parametrize("page", YAML_PAGES, ids=[p.name for p in YAML_PAGES])
def test_the_yaml_examples_of_a_page_apply_in_order(mesh: Mesh, tmp_path: Path,
                                                    page: Path) -> None:
    for block in _yaml_blocks(page):
        result = mesh.cli("apply", "-f", "-", stdin=block.text, check=False)
        assert result.returncode == 0, f"{block.where}: the example is refused:\n{result.stderr}"


def _files_named(command: str) -> list[str]:
    return re.findall(r"-f\s+(\S+\.ya?ml)", command)


def test_command_examples_run_as_written(mesh: Mesh, tmp_path: Path) -> None:
    assert shutil.which("promtool"), "promtool is needed (scripts/test.sh installs it)"
    mesh.run("books", name="books-1")
    mesh.run("web", name="web-1")
    ran: list[str] = []
    for page in PAGES:
        if page.name == "README.md":
            continue  # its blocks are the two scripts and the Quick start (below)
        work = tmp_path / page.stem
        work.mkdir()
        last_yaml = ""
        for block in blocks(page):
            if block.language == "yaml":
                last_yaml = block.text
                continue
            if block.language:
                continue
            for command in commands(block):
                if not command.startswith(("tulle ", "promtool ")) or not runnable(command):
                    continue
                for name in _files_named(command):
                    if not (work / name).exists():  # the YAML block just above it
                        (work / name).write_text(last_yaml)
                result = subprocess.run(["bash", "-c", command], cwd=work, text=True,
                                        capture_output=True, timeout=60, check=False,
                                        env=shell_env(tmp_path, mesh.state_dir))
                assert result.returncode == 0, (f"{block.where}: `{command}` failed "
                                                f"({result.returncode}):\n{result.stdout}"
                                                f"\n{result.stderr}")
                ran.append(command)
    # The pages' runnable examples; if this shrinks, examples stopped being checked.
    assert len(ran) >= 7, ran
