"""Diagnosis rules: limits."""

from __future__ import annotations

from tulle.diagnose.rules import Rule

RULES: tuple[Rule, ...] = ()
