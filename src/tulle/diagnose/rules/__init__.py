"""The diagnosis rules: one module per area, each a tuple of pure functions.

A rule is ``(Evidence, Scope) -> Iterable[Finding]``. It reads only the evidence (no I/O, no
clock: ``evidence.now`` is the time), may use the scope to skip work, and need not filter by
it: the engine drops findings outside the scope. Every area module exports ``RULES``;
``tulle.diagnose.engine.all_rules`` lists the modules.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from tulle.diagnose.evidence import Evidence
from tulle.diagnose.model import Finding, Scope

Rule = Callable[[Evidence, Scope], Iterable[Finding]]

