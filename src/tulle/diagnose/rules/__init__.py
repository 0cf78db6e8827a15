"""The diagnosis rules: one module per area, each a tuple of pure functions.

A rule is ``(Evidence, Scope) -> Iterable[Finding]``. It reads only the evidence (no I/O, no
clock: ``evidence.now`` is the time), may use the scope to skip work, and need not filter by
it: the engine drops findings outside the scope. Every area module exports ``RULES``; this
tuple lists the modules, in no particular order (ranking orders the findings).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from tulle.diagnose.evidence import Evidence
from tulle.diagnose.model import Finding, Scope

Rule = Callable[[Evidence, Scope], Iterable[Finding]]


def all_rules() -> tuple[Rule, ...]:
    """Every rule of every area. (Imported here, not at module load: no work at import.)"""
    from tulle.diagnose.rules import (
        controlplane,
        endpoints,
        identity,
        limits,
        resilience,
        routing,
    )

    areas = (endpoints, resilience, limits, routing, identity, controlplane)
    return tuple(rule for area in areas for rule in area.RULES)
