"""Reading Prometheus text in tests, and promtool (Debian's `prometheus` package)."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

import pytest

# (sample name, sorted labels) -> value
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})? "
                     r"(?P<value>\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?')

INSTALL_HINT = ("promtool is missing: install Debian's prometheus package with "
                "`sudo apt-get install -y --no-install-recommends prometheus` "
                "(scripts/test.sh does it)")


def parse(text: str) -> Samples:
    """Every sample; a series seen twice is an error (promtool does not catch it)."""
    samples: Samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        assert match is not None, f"not a sample line: {line!r}"
        labels = tuple(sorted(_LABEL.findall(match.group("labels") or "")))
        key = (match.group("name"), labels)
        assert key not in samples, f"duplicate series: {line!r}"
        samples[key] = float(match.group("value"))
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    found = [v for (n, ls), v in samples.items() if n == name and wanted <= set(ls)]
    assert found, f"no sample {name}{labels}"
    return sum(found)


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(INSTALL_HINT, pytrace=False)
    return path


def check_metrics(text: str, what: str) -> None:
    """`promtool check metrics`: the text parses and passes Prometheus's lint rules."""
    result = subprocess.run([promtool(), "check", "metrics"], input=text, capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0 and not result.stdout.strip() \
        and not result.stderr.strip(), (
        f"promtool check metrics failed for {what} ({result.returncode}):\n"
        f"{result.stdout}{result.stderr}")


def check_config(path: Path) -> str:
    result = subprocess.run([promtool(), "check", "config", str(path)], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, (f"promtool check config failed ({result.returncode}):\n"
                                    f"{result.stdout}{result.stderr}")
    return result.stdout + result.stderr


def labels_of(samples: Samples, name: str) -> list[Mapping[str, str]]:
    return [dict(ls) for (n, ls) in samples if n == name]
