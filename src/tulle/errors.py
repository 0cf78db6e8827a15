"""tulle's exception tree, documented in one place.

Every error raised on purpose derives from :class:`TulleError` and carries a message a user can
read plus, where there is one, a hint saying how to fix it. Lower-layer errors (OSError, YAML,
gRPC, HTTP) are translated at the boundary with ``raise ... from`` so the cause is kept.

    TulleError
    ├── UsageError               bad command-line input
    ├── ConfigError              bad resources: one or more Problems with file, resource and field
    ├── NotFoundError            a resource, workload or proxy does not exist
    ├── ConflictError            the request conflicts with existing state (name already taken)
    ├── AuthError                the API refused our credentials
    ├── ControlPlaneUnavailable  the control plane is not running or not reachable
    ├── StateError               the state directory is unusable (permissions, lock held, corrupt)
    ├── IdentityError            a certificate was refused: wrong identity, bad token, bad CSR
    ├── EnvoyError               the Envoy binary is missing or did not start
    └── ApiError                 any other error reported by the control-plane API
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, ClassVar


class TulleError(Exception):
    """Root of every error tulle raises on purpose."""

    kind: ClassVar[str] = "error"
    exit_code: ClassVar[int] = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def render(self) -> str:
        """The text a user sees: the message, then the hint."""
        text = f"error: {self.message}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape the API uses to carry this error to the CLI."""
        body: dict[str, Any] = {"type": self.kind, "message": self.message}
        if self.hint:
            body["hint"] = self.hint
        return body


class UsageError(TulleError):
    kind = "usage"
    exit_code = 2


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one resource: where it is, what is wrong, and how to fix it."""

    message: str
    source: str = ""  # "books.yaml:12": the file and the line its document starts on
    resource: str = ""  # "Service default/books"
    field: str = ""  # "spec.rules[0].backendRefs[1].weight"
    hint: str = ""
    level: str = "error"  # "error" or "warning"

    def render(self) -> str:
        where = ": ".join(part for part in (self.source, self.resource, self.field) if part)
        text = f"{where}: {self.message}" if where else self.message
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Problem:
        fields = {"message", "source", "resource", "field", "hint", "level"}
        return cls(**{key: str(value) for key, value in data.items() if key in fields})


class ConfigError(TulleError):
    """Resources were rejected. Nothing was stored and nothing was pushed."""

    kind = "config"

    def __init__(self, problems: Iterable[Problem], *, message: str | None = None) -> None:
        self.problems = tuple(problems)
        count = len(self.problems)
        summary = message or (
            f"{count} problem{'s' if count != 1 else ''} found; nothing was applied"
        )
        super().__init__(summary)

    def __str__(self) -> str:
        return "\n".join([self.message, *(p.render() for p in self.problems)])

    def render(self) -> str:
        lines = [f"error: {self.message}"]
        lines += ["  " + p.render().replace("\n", "\n  ") for p in self.problems]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        body = super().to_dict()
        body["problems"] = [asdict(p) for p in self.problems]
        return body


class NotFoundError(TulleError):
    kind = "not_found"


class ConflictError(TulleError):
    kind = "conflict"


class AuthError(TulleError):
    kind = "auth"


class ControlPlaneUnavailable(TulleError):
    kind = "unavailable"


class StateError(TulleError):
    kind = "state"


class IdentityError(TulleError):
    kind = "identity"


class EnvoyError(TulleError):
    kind = "envoy"


class ApiError(TulleError):
    kind = "api"


class NotReadyError(TulleError):
    """A wait ran out: what was waited for did not happen in time (`tulle wait`)."""

    kind = "not_ready"


_BY_KIND: dict[str, type[TulleError]] = {
    cls.kind: cls
    for cls in (
        UsageError,
        NotFoundError,
        ConflictError,
        AuthError,
        ControlPlaneUnavailable,
        StateError,
        IdentityError,
        EnvoyError,
        ApiError,
        NotReadyError,
    )
}


def error_from_dict(body: Mapping[str, Any]) -> TulleError:
    """Rebuild the error the API reported, so the CLI can render it like a local one."""
    kind = str(body.get("type", "api"))
    message = str(body.get("message", "the control plane reported an error"))
    hint = body.get("hint")
    if kind == "config":
        problems = [Problem.from_dict(p) for p in body.get("problems", [])]
        return ConfigError(problems, message=message)
    cls = _BY_KIND.get(kind, ApiError)
    return cls(message, hint=str(hint) if hint else None)
