"""Names, keys and metadata shared by every resource kind."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

DEFAULT_NAMESPACE = "default"

# DNS-1123 label: what Kubernetes accepts for namespaces and service names, and what fits in
# a host name such as books.default.
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
# Label keys may carry a DNS-subdomain prefix: tulle.io/version.
_LABEL_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")

Labels = tuple[tuple[str, str], ...]


def is_dns_label(value: str) -> bool:
    return bool(_LABEL.match(value))


def dns_label_problem(value: object) -> str | None:
    """Why ``value`` is not a valid name, or None when it is."""
    if not isinstance(value, str):
        return f"must be a string, got {type_name(value)}"
    if not value:
        return "must not be empty"
    if len(value) > 63:
        return f"must be at most 63 characters, got {len(value)}"
    if not is_dns_label(value):
        return (f'"{value}" is not a valid name: use lower-case letters, digits and "-", '
                "starting and ending with a letter or digit")
    return None


def label_problem(key: object, value: object) -> str | None:
    if not isinstance(key, str) or not _LABEL_KEY.match(key):
        return f"label key {key!r} is not valid (letters, digits, '-', '_', '.', optional prefix/)"
    if not isinstance(value, str) or not _LABEL_VALUE.match(value):
        return (f"label {key}={value!r}: the value must be a string of letters, digits, "
                "'-', '_', '.'")
    return None


def freeze_labels(labels: dict[str, str] | None) -> Labels:
    return tuple(sorted((labels or {}).items()))


def type_name(value: Any) -> str:
    """The YAML-ish name of a value's type, for error messages."""
    match value:
        case None:
            return "null"
        case bool():
            return "boolean"
        case int() | float():
            return "number"
        case str():
            return "string"
        case list() | tuple():
            return "list"
        case dict():
            return "mapping"
        case _:
            return type(value).__name__


@dataclass(frozen=True, order=True)
class ServiceRef:
    """A service, named by namespace and name."""

    namespace: str
    name: str

    @property
    def host(self) -> str:
        """The fully qualified mesh host name: ``books.default``."""
        return f"{self.name}.{self.namespace}"

    def hosts_from(self, caller_namespace: str) -> tuple[str, ...]:
        """The hosts a caller in ``caller_namespace`` reaches this service by (as in its
        outbound scopes; ports stripped)."""
        if self.namespace == caller_namespace:
            return (self.name, self.host)
        return (self.host,)

    def __str__(self) -> str:
        return self.host


@dataclass(frozen=True, order=True)
class ResourceKey:
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        if not self.namespace:  # a mesh-wide resource
            return f"{self.kind} {self.name}"
        return f"{self.kind} {self.namespace}/{self.name}"


@dataclass(frozen=True)
class ObjectMeta:
    name: str
    namespace: str = DEFAULT_NAMESPACE
    labels: Labels = ()
    annotations: Labels = ()  # free-form notes for people and tools; kept, never interpreted
