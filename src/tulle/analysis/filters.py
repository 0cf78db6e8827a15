"""What the user asked to hide (--suppress) and when analysis fails (--failure-threshold)."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tulle.analysis.codes import CODES, Level, find_code
from tulle.analysis.engine import Message
from tulle.errors import UsageError
from tulle.model.kinds import find_kind

_FORMAT_HINT = ("write CODE=KIND/NAME or CODE=KIND/NAMESPACE/NAME, for example "
                "TUL0005=HTTPRoute/books or TUL0015=TrafficPolicy/shop/*")


@dataclass(frozen=True)
class Suppression:
    code: str
    kind: str
    namespace: str | None  # None: any namespace
    name: str  # "*" or a glob

    def matches(self, message: Message) -> bool:
        return (message.code == self.code and message.kind == self.kind
                and (self.namespace is None or self.namespace == message.namespace)
                and fnmatch.fnmatchcase(message.name, self.name))


def parse_suppression(text: str) -> Suppression:
    code_text, sep, target = text.partition("=")
    if not sep or not code_text or not target:
        raise UsageError(f"--suppress {text!r} is not CODE=KIND/NAME", hint=_FORMAT_HINT)
    code = find_code(code_text.strip())
    if code is None:
        raise UsageError(f"--suppress {text!r}: unknown code {code_text!r}",
                         hint="codes: " + ", ".join(c.code for c in CODES))
    parts = target.strip().split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise UsageError(f"--suppress {text!r} is not CODE=KIND/NAME", hint=_FORMAT_HINT)
    info = find_kind(parts[0])
    if info is None:
        raise UsageError(f"--suppress {text!r}: unknown kind {parts[0]!r}",
                         hint="kinds: Service, HTTPRoute, TrafficPolicy, Mesh")
    namespace = parts[1] if len(parts) == 3 else None
    return Suppression(code.code, info.kind, namespace, parts[-1])


def unsuppressed(messages: Sequence[Message], suppressions: Iterable[Suppression]
                 ) -> list[Message]:
    """The messages no suppression matches."""
    rules = list(suppressions)
    return [m for m in messages if not any(rule.matches(m) for rule in rules)]


def fails(messages: Iterable[Message], threshold: Level) -> bool:
    return any(m.level >= threshold for m in messages)
