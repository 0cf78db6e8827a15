"""The edge where untrusted documents become typed resources.

Every problem found names the source (file and document), the resource and the field path, so a
user can go straight to the line to fix. All problems of a batch are collected before failing:
fixing one error only to meet the next is a waste of the user's time.
"""

from __future__ import annotations

import datetime
import functools
import json
import types
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields, is_dataclass
from typing import Any

from tulle.errors import ConfigError, Problem
from tulle.model.kinds import KINDS, KindInfo, closest, find_kind
from tulle.model.meta import (
    DEFAULT_NAMESPACE,
    ObjectMeta,
    dns_label_problem,
    freeze_labels,
    label_problem,
    type_name,
)
from tulle.model.resource import Resource
from tulle.model.semantics import spec_problems
from tulle.model.spec_config import to_camel

_ENVELOPE_FIELDS = ("apiVersion", "kind", "metadata", "spec")
_IGNORED_FIELDS = ("status",)  # kubectl get -o yaml output can be applied back
_METADATA_FIELDS = ("name", "namespace", "labels", "annotations")


@dataclass(frozen=True)
class Document:
    """One YAML or JSON document and where it came from (``books.yaml:12``)."""

    source: str
    body: Any


def parse_documents(documents: Iterable[Document]) -> tuple[Resource, ...]:
    """Parse a batch; raise ConfigError listing every problem, including duplicate names."""
    resources: list[Resource] = []
    problems: list[Problem] = []
    first_seen: dict[Any, str] = {}
    for document in documents:
        try:
            resource = parse_document(document)
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        # Look up the key, not the source: API clients may send one source for every document.
        earlier = first_seen.get(resource.key)
        if earlier is not None:
            problems.append(Problem(
                source=document.source, resource=str(resource.key), field="metadata.name",
                message=f"duplicate name: {earlier} already defines {resource.key}",
                hint="give each resource a unique name, or remove one of the two",
            ))
            continue
        first_seen[resource.key] = document.source
        resources.append(resource)
    if problems:
        raise ConfigError(problems)
    return tuple(resources)


def parse_document(document: Document) -> Resource:
    body = document.body
    if not isinstance(body, Mapping):
        raise _fail(document, "", "", f"expected a mapping with apiVersion, kind, metadata and "
                    f"spec, got {type_name(body)}", "each YAML document must be one resource")
    info = _parse_kind(document, body)
    # Bad metadata does not stop the checks of the spec: report everything in one go.
    meta, resource_name, problems = _parse_metadata(document, info, body.get("metadata"))
    for key in body:
        if key not in _ENVELOPE_FIELDS and key not in _IGNORED_FIELDS:
            problems.append(_unknown_field(document.source, resource_name, str(key),
                                           _ENVELOPE_FIELDS))
    raw_spec = body.get("spec")
    if raw_spec is None:
        raw_spec = {}
    spec: Any = None
    if not isinstance(raw_spec, Mapping):
        problems.append(Problem(source=document.source, resource=resource_name, field="spec",
                                message=f"expected a mapping, got {type_name(raw_spec)}"))
    elif unsupported := list(_unsupported_values(raw_spec, "spec")):
        problems.extend(Problem(source=document.source, resource=resource_name, field=path,
                                message=message) for path, message in unsupported)
    else:
        spec, spec_problems_found = _validate_spec(info, raw_spec)
        problems.extend(
            Problem(source=document.source, resource=resource_name, field=field_path,
                    message=message, hint=hint)
            for field_path, message, hint in spec_problems_found
        )
    if problems:
        raise ConfigError(problems)
    manifest = {
        "apiVersion": info.api_version,
        "kind": info.kind,
        "metadata": _canonical_metadata(meta),
        "spec": _plain(raw_spec),
    }
    return Resource(info=info, meta=meta, spec=spec, manifest=manifest)


def resource_from_manifest(manifest: Mapping[str, Any]) -> Resource:
    """Rebuild a stored resource. Stored manifests were validated when they were applied."""
    return parse_document(Document(source="store", body=manifest))


def with_annotation(resource: Resource, key: str, value: str | None) -> Resource:
    """``resource`` with annotation ``key`` set to ``value`` (None: without it)."""
    annotations = {k: v for k, v in resource.meta.annotations if k != key}
    if value is not None:
        annotations[key] = value
    if annotations == dict(resource.meta.annotations):
        return resource
    metadata = {k: v for k, v in resource.manifest["metadata"].items() if k != "annotations"}
    if annotations:
        metadata["annotations"] = dict(sorted(annotations.items()))
    return resource_from_manifest({**resource.manifest, "metadata": metadata})


def _parse_kind(document: Document, body: Mapping[str, Any]) -> KindInfo:
    kind = body.get("kind")
    api_version = body.get("apiVersion")
    if not isinstance(kind, str) or not kind:
        raise _fail(document, "", "kind", "required field is missing" if kind is None else
                    f"expected a string, got {type_name(kind)}",
                    f"known kinds: {', '.join(k.kind for k in KINDS)}")
    info = find_kind(kind)
    if info is None or info.kind != kind:
        guess = info.kind if info else closest(kind, [k.kind for k in KINDS])
        hint = f'did you mean "{guess}"? ' if guess else ""
        raise _fail(document, f"kind {kind}", "kind", f'unknown kind "{kind}"',
                    f"{hint}known kinds: {', '.join(k.kind for k in KINDS)}")
    if api_version not in info.api_versions:
        got = "missing" if api_version is None else f'"{api_version}"'
        raise _fail(document, f"kind {kind}", "apiVersion",
                    f"{kind} needs apiVersion {info.api_version}, got {got}",
                    f"set apiVersion: {info.api_version}")
    return info


def _parse_metadata(document: Document, info: KindInfo, raw: Any
                    ) -> tuple[ObjectMeta, str, list[Problem]]:
    """The metadata, the resource's name for messages, and what is wrong with the metadata."""
    where = f"{info.kind} (unnamed)"
    if not isinstance(raw, Mapping):
        return ObjectMeta(name=""), where, [Problem(
            source=document.source, resource=where, field="metadata",
            message="required field is missing" if raw is None
            else f"expected a mapping, got {type_name(raw)}",
            hint="add metadata: {name: NAME}")]
    name = raw.get("name")
    problems: list[Problem] = []
    if info.namespaced:
        namespace = raw.get("namespace", DEFAULT_NAMESPACE)
    else:
        namespace = ""
        if raw.get("namespace") not in (None, ""):
            problems.append(Problem(
                source=document.source, resource=f"{info.kind} {name}",
                field="metadata.namespace", message=f"{info.kind} is not namespaced",
                hint="remove metadata.namespace"))
    if isinstance(name, str):
        where = (f"{info.kind} {namespace}/{name}" if namespace and isinstance(namespace, str)
                 else f"{info.kind} {name}")
    if name is None:
        problems.append(Problem(source=document.source, resource=where, field="metadata.name",
                                message="required field is missing", hint="add metadata.name"))
    elif (why := dns_label_problem(name)) is not None:
        problems.append(Problem(source=document.source, resource=where, field="metadata.name",
                                message=why))
    elif info.only_name is not None and name != info.only_name:
        problems.append(Problem(source=document.source, resource=where, field="metadata.name",
                                message=f"there is one {info.kind}, named {info.only_name}",
                                hint=f"set metadata.name: {info.only_name}"))
    if info.namespaced and (why := dns_label_problem(namespace)) is not None:
        problems.append(Problem(source=document.source, resource=where,
                                field="metadata.namespace", message=why))
    labels = _string_map(raw, "labels", label_problem, problems, document.source, where)
    annotations = _string_map(raw, "annotations", _annotation_problem, problems,
                              document.source, where)
    for key in raw:
        if key not in _METADATA_FIELDS:
            problems.append(_unknown_field(document.source, where, f"metadata.{key}",
                                           _METADATA_FIELDS))
    meta = ObjectMeta(name=str(name), namespace=str(namespace), labels=freeze_labels(labels),
                      annotations=freeze_labels(annotations))
    return meta, where, problems


def _string_map(raw: Mapping[str, Any], key: str,
                check: Callable[[object, object], str | None], problems: list[Problem],
                source: str, where: str) -> dict[str, str]:
    """metadata.labels or metadata.annotations: a mapping of strings, checked entry by entry."""
    value = raw.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        problems.append(Problem(source=source, resource=where, field=f"metadata.{key}",
                                message=f"expected a mapping, got {type_name(value)}"))
        return {}
    for entry, item in value.items():
        if (why := check(entry, item)) is not None:
            hint = "quote the value" if key == "annotations" else ""
            problems.append(Problem(source=source, resource=where,
                                    field=f"metadata.{key}.{entry}", message=why, hint=hint))
    return {str(k): str(v) for k, v in value.items()}


def _annotation_problem(key: object, value: object) -> str | None:
    if isinstance(key, str) and isinstance(value, str):
        return None
    return f"annotations map strings to strings, got {type_name(value)}"


def _canonical_metadata(meta: ObjectMeta) -> dict[str, Any]:
    out: dict[str, Any] = {"name": meta.name}
    if meta.namespace:
        out["namespace"] = meta.namespace
    if meta.labels:
        out["labels"] = dict(meta.labels)
    if meta.annotations:
        out["annotations"] = dict(meta.annotations)
    return out


def _validate_spec(info: KindInfo, raw: Mapping[str, Any]
                   ) -> tuple[Any, list[tuple[str, str, str]]]:
    from pydantic import ValidationError

    # Strict JSON-mode validation: "80" is not a port and 1.5 is not a count, but a YAML list is
    # a fine tuple.
    try:
        spec = _adapter(info.kind).validate_json(json.dumps(_plain(raw)), strict=True)
    except ValidationError as exc:
        return None, [_describe(info.spec_type, error) for error in exc.errors()
                      if not _follows_item_errors(error)]
    return spec, list(spec_problems(spec))


def _follows_item_errors(error: Mapping[str, Any]) -> bool:
    """True for a list's length error caused only by errors in its items.

    pydantic counts the items that validated, so one bad backendRef also reports "at least 1
    item" on a list that has one: noise that points away from the real error.
    """
    value = error.get("input")
    min_length = (error.get("ctx") or {}).get("min_length")
    return (error["type"] == "too_short" and isinstance(value, list)
            and isinstance(min_length, int) and len(value) >= min_length)


@functools.cache
def _adapter(kind: str) -> Any:
    from pydantic import TypeAdapter

    info = find_kind(kind)
    assert info is not None
    return TypeAdapter(info.spec_type)


def _describe(spec_type: type[Any], error: Mapping[str, Any]) -> tuple[str, str, str]:
    """Turn one pydantic error into (field path, message, hint) in the user's vocabulary."""
    loc: Sequence[Any] = error["loc"]
    kind = error["type"]
    value = error.get("input")
    ctx = error.get("ctx") or {}
    hint = ""
    if kind in ("extra_forbidden", "unexpected_keyword_argument"):
        known = _fields_at(spec_type, loc[:-1])
        message = f'unknown field "{loc[-1]}"'
        hint = _field_hint(str(loc[-1]), known)
    elif kind in {"missing", "missing_argument"}:
        message = "required field is missing"
    elif kind == "literal_error":
        message = f"must be one of {ctx.get('expected')}, got {json.dumps(value)}"
    elif kind in ("greater_than_equal", "greater_than"):
        bound = ctx.get("ge", ctx.get("gt"))
        message = f"must be {'at least' if 'ge' in ctx else 'greater than'} {bound}, got {value}"
    elif kind in ("less_than_equal", "less_than"):
        bound = ctx.get("le", ctx.get("lt"))
        message = f"must be {'at most' if 'le' in ctx else 'less than'} {bound}, got {value}"
    elif kind in ("too_short", "string_too_short"):
        message = f"must have at least {ctx.get('min_length')} " + _unit(kind)
    elif kind in ("too_long", "string_too_long"):
        message = f"must have at most {ctx.get('max_length')} " + _unit(kind)
    elif kind.endswith("_type") or kind.endswith("_parsing"):
        expected = _EXPECTED.get(kind.removesuffix("_type").removesuffix("_parsing"), "")
        message = (f"expected {expected}, got {type_name(value)} {json.dumps(value)}"
                   if expected else str(error["msg"]))
        hint = _number_hint(kind, value)
    else:
        message = str(error["msg"])
    return _path(loc), message, hint


_EXPECTED = {
    "int": "an integer",
    "string": "a string",
    "bool": "true or false",
    "tuple": "a list",
    "list": "a list",
    "dataclass": "a mapping",
    "dict": "a mapping",
    "float": "a number",
}


def _number_hint(kind: str, value: Any) -> str:
    """A number written as a string (``port: "80"``, ``weight: 1e6``): say how to write it."""
    if not kind.startswith(("int_", "float_")) or not isinstance(value, str):
        return ""
    text = value.strip()
    try:
        number = float(text)
    except ValueError:
        return "write a number, e.g. 80, without quotes"
    if kind.startswith("float_") or text.lstrip("+-").isdigit():
        return f"write it without quotes: {text}"
    if number.is_integer():  # YAML reads 1e6 as a string
        return f"write it as a whole number: {int(number)}"
    return "write a whole number"


def _unit(kind: str) -> str:
    return "characters" if kind.startswith("string") else "item(s)"


def _path(loc: Sequence[Any]) -> str:
    out = "spec"
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _field_hint(name: str, known: Sequence[str]) -> str:
    if not known:
        return ""
    guess = closest(name, known)
    prefix = f'did you mean "{guess}"? ' if guess else ""
    return f"{prefix}known fields here: {', '.join(known)}"


def _fields_at(spec_type: type[Any], loc: Sequence[Any]) -> list[str]:
    """The YAML field names accepted at ``loc`` inside ``spec_type``."""
    current: Any = spec_type
    for part in loc:
        current = _unwrap(current)
        if isinstance(part, int):
            args = typing.get_args(current)
            current = args[0] if args else None
        elif is_dataclass(current):
            hints = typing.get_type_hints(current, include_extras=True)
            by_alias = {to_camel(f.name): hints[f.name] for f in fields(current)}
            current = by_alias.get(part)
        else:
            return []
    current = _unwrap(current)
    if not is_dataclass(current):
        return []
    return [to_camel(f.name) for f in fields(current)]


def _unwrap(tp: Any) -> Any:
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            non_none = [a for a in typing.get_args(tp) if a is not type(None)]
            tp = non_none[0] if len(non_none) == 1 else tp
            if len(non_none) != 1:
                return tp
        else:
            return tp


def _plain(value: Any) -> Any:
    """A JSON-compatible copy: YAML may produce dates and other non-JSON scalars."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, datetime.date | datetime.datetime):
        return value.isoformat()
    return value


def _unsupported_values(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """(field path, message) for each value JSON cannot carry, such as YAML's !!binary or !!set."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from _unsupported_values(item, f"{path}.{key}")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _unsupported_values(item, f"{path}[{index}]")
    elif not isinstance(value, str | int | float | datetime.date) and value is not None:
        yield path, f"expected a string, number, list or mapping, got {type_name(value)}"


def _unknown_field(source: str, resource: str, field_path: str,
                   known: Sequence[str]) -> Problem:
    name = field_path.rsplit(".", 1)[-1]
    return Problem(source=source, resource=resource, field=field_path,
                   message=f'unknown field "{name}"', hint=_field_hint(name, known))


def _fail(document: Document, resource: str, field_path: str, message: str,
          hint: str = "") -> ConfigError:
    return ConfigError([Problem(source=document.source, resource=resource, field=field_path,
                                message=message, hint=hint)])
