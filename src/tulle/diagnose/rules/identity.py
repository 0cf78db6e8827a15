"""Diagnosis rules: identity (codes TUL1050-TUL1099). Placeholder for their owner."""

from __future__ import annotations

from tulle.diagnose.rules import Rule

RULES: tuple[Rule, ...] = ()
