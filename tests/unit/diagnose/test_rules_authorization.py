"""The AuthorizationPolicy rules' reading of RBAC policy IDs: which policies an ID stands for,
and how a finding words it."""

from __future__ import annotations

import pytest

from tulle.diagnose.rules.authorization import describe_id, policies_of
from tulle.model.meta import ResourceKey


def key(namespace: str, name: str) -> ResourceKey:
    return ResourceKey("AuthorizationPolicy", namespace, name)


@pytest.mark.parametrize(("policy_id", "keys", "words"), [
    ("AuthorizationPolicy:default/no-ops:ops", (key("default", "no-ops"),),
     "rule ops of AuthorizationPolicy default/no-ops (DENY)"),
    ("AuthorizationPolicy:shop/guard:0", (key("shop", "guard"),),
     "rule 0 of AuthorizationPolicy shop/guard (DENY)"),
    ("no-ALLOW-rule-matched:default/a,shop/b", (key("default", "a"), key("shop", "b")),
     "no ALLOW rule of AuthorizationPolicy default/a, AuthorizationPolicy shop/b"),
    ("default-deny:tulle-system/closed", (key("tulle-system", "closed"),),
     "the default deny of AuthorizationPolicy tulle-system/closed"),
])
def test_an_rbac_policy_id_names_its_policies(policy_id: str, keys: tuple[ResourceKey, ...],
                                               words: str) -> None:
    assert policies_of(policy_id) == keys
    assert describe_id(policy_id) == words
