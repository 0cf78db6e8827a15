"""Code blocks of the project's Markdown docs, as the doc-example tests run them."""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGES = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))
# A word in capitals (FILE, NAME), brackets, alternatives or an ellipsis: not runnable as is.
_PLACEHOLDER = re.compile(r"\b[A-Z][A-Z_]{2,}\b|\[|\||\.\.\.|<[a-z]")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # where the block's first line is
    language: str  # "yaml", "" for a fence without one, "indented" for an indented block
    text: str

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """Fenced blocks, and indented blocks that are not inside a list."""
    out: list[Block] = []
    lines = page.read_text().splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.startswith("```"):
            language = line[3:].strip()
            start = index + 1
            index = start
            while index < len(lines) and not lines[index].startswith("```"):
                index += 1
            out.append(Block(page, start + 1, language, "\n".join(lines[start:index]) + "\n"))
        elif line.startswith("    ") and (index == 0 or not lines[index - 1].strip()):
            start = index
            while index < len(lines) and (lines[index].startswith("    ")
                                          or not lines[index].strip()):
                index += 1
            text = "\n".join(raw[4:] for raw in lines[start:index]).strip("\n") + "\n"
            out.append(Block(page, start + 1, "indented", text))
            continue
        index += 1
    return out


def commands(block: Block) -> list[str]:
    """The lines of a shell block, comments and trailing comments removed."""
    out = []
    for raw in block.text.splitlines():
        line = re.sub(r"\s+#.*$", "", raw).strip()
        if line and not line.startswith("#"):
            out.append(line)
    return out


def runnable(command: str) -> bool:
    return _PLACEHOLDER.search(command) is None


def shell_env(home: Path, state_dir: Path | None = None) -> dict[str, str]:
    """A user's shell: HOME, and the venv's `tulle` and `python3` first on PATH, as after
    activating it. ``state_dir``: the mesh the commands talk to (TULLE_HOME)."""
    env = dict(os.environ, HOME=str(home),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    env.pop("TULLE_HOME", None)
    if state_dir is not None:
        env["TULLE_HOME"] = str(state_dir)
    return env
