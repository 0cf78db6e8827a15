"""TrafficPolicy settings that are ignored because another policy sets the same thing for the
same target first (the same resolution the control plane applies)."""

from __future__ import annotations

from tulle.analysis.codes import POLICY_SETTING_IGNORED
from tulle.analysis.engine import AnalysisContext
from tulle.model.kinds import HTTP_ROUTE, TRAFFIC_POLICY
from tulle.model.meta import ResourceKey
from tulle.model.policies import resolve
from tulle.model.spec_config import to_camel

KINDS = (HTTP_ROUTE, TRAFFIC_POLICY)


def ignored_settings(ctx: AnalysisContext) -> None:
    seen: set[tuple[str, str, str]] = set()
    for conflict in resolve(ctx.resources(*KINDS)).conflicts:
        kind, _, rest = conflict.ignored.partition(" ")
        namespace, _, name = rest.partition("/")
        setting = to_camel(conflict.setting)
        # A policy on a whole route conflicts once per rule: say it once per route.
        target = conflict.target.split(" rule ", 1)[0]
        if (conflict.ignored, setting, target) in seen:
            continue
        seen.add((conflict.ignored, setting, target))
        ctx.report(POLICY_SETTING_IGNORED, ResourceKey(kind, namespace, name),
                   f"spec.{setting}", target=target, setting=setting, kept=conflict.kept)
