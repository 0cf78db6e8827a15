"""Checks on one HTTPRoute beyond its schema: paths, regexes, filters, timeouts, retries.

Whatever passes here must be something Envoy accepts: regexes are compiled with RE2, Envoy's
engine, under Envoy's default program-size limit; header names are HTTP tokens and never
pseudo-headers.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from tulle.model.durations import DURATION_HINT, parse_duration
from tulle.model.external import dns_name_problem
from tulle.model.httproute import (
    HeaderMatch,
    HeaderModifier,
    HTTPRouteSpec,
    PathMatch,
    PathModifier,
    RouteFilter,
    RouteRule,
)
from tulle.model.meta import dns_label_problem
from tulle.model.paths import prefix_rewrite
from tulle.model.spec_config import to_camel

FieldIssue = tuple[str, str, str]

# Envoy refuses regexes whose RE2 program is bigger than this (runtime default).
MAX_REGEX_PROGRAM_SIZE = 100
_HOSTNAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_FORBIDDEN_HEADERS = {"host", "connection", "transfer-encoding", "upgrade", "keep-alive",
                      "proxy-connection", "te"}
_FILTER_FIELDS = {"RequestHeaderModifier": "request_header_modifier",
                  "ResponseHeaderModifier": "response_header_modifier",
                  "RequestMirror": "request_mirror", "URLRewrite": "url_rewrite",
                  "RequestRedirect": "request_redirect"}


def regex_problem(pattern: str) -> str | None:
    """Why Envoy would refuse ``pattern``, or None."""
    import re2

    options = re2.Options()
    options.log_errors = False
    try:
        compiled = re2.compile(pattern, options)
    except re2.error as exc:
        reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) \
            else str(exc)
        return f"the regular expression does not compile (RE2, as in Envoy): {reason}"
    if compiled.programsize > MAX_REGEX_PROGRAM_SIZE:
        return (f"the regular expression is too complex for Envoy (RE2 program size "
                f"{compiled.programsize} > {MAX_REGEX_PROGRAM_SIZE})")
    return None


def header_name_problem(name: str, *, modifying: bool) -> str | None:
    if not _TOKEN.fullmatch(name):
        return f'"{name}" is not a valid header name'
    if modifying and name.lower() in _FORBIDDEN_HEADERS:
        return f'the "{name}" header cannot be modified here'
    return None


def header_value_problem(value: str) -> str | None:
    """Envoy refuses header values with control characters (CR and LF would split headers)."""
    bad = next((c for c in value if (ord(c) < 0x20 and c != "\t") or ord(c) == 0x7F), None)
    if bad is not None:
        return f"contains the control character {bad!r}; header values cannot"
    return None


def hostname_problem(host: str) -> str | None:
    if not _HOSTNAME.fullmatch(host):
        return (f'"{host}" is not a valid hostname: lower-case letters, digits, "-" and "."; '
                f"each label 1-63 characters that start and end with a letter or digit")
    return None


def _path_chars_problem(value: str) -> str | None:
    bad = next((c for c in value if c in "?#" or ord(c) <= 0x20 or ord(c) == 0x7F), None)
    if bad is not None:
        return f"a path cannot contain {bad!r}"
    return None


def duration_problem(value: str | None) -> str | None:
    if value is not None and parse_duration(value) is None:
        return f'"{value}" is not a duration'
    return None


def httproute_problems(spec: HTTPRouteSpec) -> Iterator[FieldIssue]:
    for i, parent in enumerate(spec.parent_refs):
        yield from _name("spec.parentRefs", i, parent.name, parent.namespace)
        if parent.kind == "Service" and parent.group == "gateway.networking.k8s.io":
            yield (f"spec.parentRefs[{i}].group", "a Service is in the core group",
                   "remove group, or set kind: Gateway to attach the route to a Gateway")
        if parent.kind == "Gateway" and parent.port is not None:
            yield (f"spec.parentRefs[{i}].port", "a Gateway parent takes no port",
                   "remove port: the route is served on every listener of the Gateway")
    # Hostnames choose a Gateway's virtual hosts; on a service's route they are ignored.
    on_gateway = any(parent.kind == "Gateway" for parent in spec.parent_refs)
    for h, hostname in enumerate(spec.hostnames if on_gateway else ()):
        if (why := dns_name_problem(hostname.removeprefix("*."))) is not None:
            yield f"spec.hostnames[{h}]", why, "a host such as shop.example.com, or *.example.com"
    if on_gateway and spec.mode == "DryRun":
        yield ("spec.mode", "a route attached to a Gateway cannot run in dry run",
               "dry-run the route on the services it calls, or apply it enforced")
    names: dict[str, int] = {}
    for r, rule in enumerate(spec.rules):
        base = f"spec.rules[{r}]"
        if rule.name is not None:
            if (why := dns_label_problem(rule.name)) is not None:
                yield f"{base}.name", why, ""
            elif rule.name in names:
                yield (f"{base}.name", f'rules[{names[rule.name]}] is also named "{rule.name}"',
                       "give each rule a unique name")
            names.setdefault(rule.name, r)
        yield from _matches(base, rule)
        yield from _backends(base, rule)
        yield from _filters(base, rule)
        yield from _timing(base, rule)


def _name(prefix: str, index: int, name: str, namespace: str | None) -> Iterator[FieldIssue]:
    if (why := dns_label_problem(name)) is not None:
        yield f"{prefix}[{index}].name", why, ""
    if namespace is not None and (why := dns_label_problem(namespace)) is not None:
        yield f"{prefix}[{index}].namespace", why, ""


def path_match_problems(where: str, path: PathMatch,
                        query_hint: str = "match query parameters with queryParams"
                        ) -> Iterator[FieldIssue]:
    """A path match as Envoy takes it (HTTPRoute matches, AuthorizationPolicy paths)."""
    if path.type == "RegularExpression":
        if (why := regex_problem(path.value)) is not None:
            yield f"{where}.value", why, "check the pattern's syntax (RE2)"
    elif not path.value.startswith("/"):
        yield (f"{where}.value", f'a path must start with "/", got "{path.value}"',
               f'write "/{path.value}"')
    elif (why := _path_chars_problem(path.value)) is not None:
        yield f"{where}.value", why, query_hint


def header_match_problems(where: str, header: HeaderMatch) -> Iterator[FieldIssue]:
    """A header match as Envoy takes it (HTTPRoute, fault injection, AuthorizationPolicy)."""
    if (why := header_name_problem(header.name, modifying=False)) is not None:
        yield f"{where}.name", why, ""
    if header.type == "RegularExpression" and (why := regex_problem(header.value)):
        yield f"{where}.value", why, "check the pattern's syntax (RE2)"
    elif (why := header_value_problem(header.value)) is not None:
        yield f"{where}.value", why, ""


def _matches(base: str, rule: RouteRule) -> Iterator[FieldIssue]:
    for m, match in enumerate(rule.matches):
        where = f"{base}.matches[{m}]"
        yield from path_match_problems(f"{where}.path", match.path)
        for h, header in enumerate(match.headers):
            yield from header_match_problems(f"{where}.headers[{h}]", header)
        for q, param in enumerate(match.query_params):
            if param.type == "RegularExpression" and (why := regex_problem(param.value)):
                yield f"{where}.queryParams[{q}].value", why, "check the pattern's syntax (RE2)"


def _backends(base: str, rule: RouteRule) -> Iterator[FieldIssue]:
    for b, backend in enumerate(rule.backend_refs):
        yield from _name(f"{base}.backendRefs", b, backend.name, backend.namespace)
    redirects = any(f.type == "RequestRedirect" for f in rule.filters)
    if rule.backend_refs and redirects:
        yield (f"{base}.backendRefs", "a rule that redirects cannot also have backendRefs",
               "remove the backendRefs, or the RequestRedirect filter")
    elif not rule.backend_refs and not redirects:
        yield (f"{base}.backendRefs", "a rule needs backendRefs or a RequestRedirect filter",
               "add backendRefs: [{name: SERVICE}]")
    elif rule.backend_refs and all(backend.weight == 0 for backend in rule.backend_refs):
        yield (f"{base}.backendRefs",
               "every backendRef has weight 0, so every request would fail with 500",
               "give at least one backendRef a weight above 0")


def _filters(base: str, rule: RouteRule) -> Iterator[FieldIssue]:
    seen: set[str] = set()
    for f, item in enumerate(rule.filters):
        where = f"{base}.filters[{f}]"
        expected = _FILTER_FIELDS[item.type]
        for other in _FILTER_FIELDS.values():
            value = getattr(item, other)
            camel = to_camel(other)
            if other == expected and value is None:
                yield f"{where}.{camel}", f"a {item.type} filter needs {camel}", ""
            elif other != expected and value is not None:
                yield (f"{where}.{camel}", f"{camel} does not belong in a {item.type} filter",
                       "move it into a filter of its own, or set type to the matching kind")
        if item.type in seen and item.type != "RequestMirror":
            yield f"{where}.type", f"the rule already has a {item.type} filter", \
                "merge the two filters into one"
        seen.add(item.type)
        yield from _filter_details(where, rule, item)
    if {"RequestRedirect", "URLRewrite"} <= seen:
        yield (f"{base}.filters", "a rule cannot both redirect and rewrite",
               "keep one of RequestRedirect and URLRewrite")


def _filter_details(where: str, rule: RouteRule, item: RouteFilter) -> Iterator[FieldIssue]:
    for modifier, field in ((item.request_header_modifier, "requestHeaderModifier"),
                            (item.response_header_modifier, "responseHeaderModifier")):
        if modifier is not None:
            yield from _modifier(f"{where}.{field}", modifier)
    mirror = item.request_mirror
    if mirror is not None:
        for field, value in (("name", mirror.backend_ref.name),
                             ("namespace", mirror.backend_ref.namespace)):
            if value is not None and (why := dns_label_problem(value)) is not None:
                yield f"{where}.requestMirror.backendRef.{field}", why, ""
        if mirror.percent is not None and mirror.fraction is not None:
            yield (f"{where}.requestMirror", "set percent or fraction, not both", "")
        if mirror.fraction is not None and \
                mirror.fraction.numerator > mirror.fraction.denominator:
            yield (f"{where}.requestMirror.fraction",
                   "the numerator must not exceed the denominator", "")
    for field, host in (("urlRewrite", item.url_rewrite and item.url_rewrite.hostname),
                        ("requestRedirect",
                         item.request_redirect and item.request_redirect.hostname)):
        if host and (why := hostname_problem(host)) is not None:
            yield f"{where}.{field}.hostname", why, "write a DNS name such as books.example.com"
    paths: list[tuple[str, PathModifier]] = []
    if item.url_rewrite is not None and item.url_rewrite.path is not None:
        paths.append(("urlRewrite", item.url_rewrite.path))
    if item.request_redirect is not None and item.request_redirect.path is not None:
        paths.append(("requestRedirect", item.request_redirect.path))
    for field, path in paths:
        yield from _path_modifier(f"{where}.{field}.path", rule, path)


def _modifier(where: str, modifier: HeaderModifier) -> Iterator[FieldIssue]:
    names = [(f"set[{i}]", p.name) for i, p in enumerate(modifier.set)]
    names += [(f"add[{i}]", p.name) for i, p in enumerate(modifier.add)]
    names += [(f"remove[{i}]", n) for i, n in enumerate(modifier.remove)]
    for field, name in names:
        if (why := header_name_problem(name, modifying=True)) is not None:
            yield f"{where}.{field}", why, "use URLRewrite to change the host" \
                if name.lower() == "host" else ""
    values = [(f"set[{i}]", p.value) for i, p in enumerate(modifier.set)]
    values += [(f"add[{i}]", p.value) for i, p in enumerate(modifier.add)]
    for field, value in values:
        if (why := header_value_problem(value)) is not None:
            yield f"{where}.{field}.value", why, ""


def _path_modifier(where: str, rule: RouteRule, modifier: PathModifier) -> Iterator[FieldIssue]:
    if modifier.type == "ReplaceFullPath":
        value, field, other = (modifier.replace_full_path, "replaceFullPath",
                               modifier.replace_prefix_match)
    else:
        value, field, other = (modifier.replace_prefix_match, "replacePrefixMatch",
                               modifier.replace_full_path)
        if any(m.path.type != "PathPrefix" for m in rule.matches):
            yield (f"{where}.type", "ReplacePrefixMatch needs every match of the rule to be "
                                    "a PathPrefix", "use ReplaceFullPath, or PathPrefix matches")
    if value is None:
        yield f"{where}.{field}", f"{modifier.type} needs {field}", ""
    if other is not None:
        unused = "replacePrefixMatch" if field == "replaceFullPath" else "replaceFullPath"
        yield (f"{where}.{unused}", f"{unused} does not belong with type {modifier.type}",
               "remove it, or set type to the other kind")
    if value is not None and not value.startswith("/"):
        yield f"{where}.{field}", f'a path must start with "/", got "{value}"', ""
    elif value is not None and (why := _path_chars_problem(value)) is not None:
        yield f"{where}.{field}", why, ""
    elif value is not None and modifier.type == "ReplacePrefixMatch":
        for match in rule.matches:
            pattern, _ = prefix_rewrite(match.path.value, value)
            if (why := regex_problem(pattern)) is not None:
                yield (f"{where}.replacePrefixMatch", f"the prefix {match.path.value} is too "
                       f"long to rewrite: {why}", "use a shorter prefix, or ReplaceFullPath")


def _timing(base: str, rule: RouteRule) -> Iterator[FieldIssue]:
    timeouts = rule.timeouts
    if timeouts is not None:
        for field, value in (("request", timeouts.request),
                             ("backendRequest", timeouts.backend_request)):
            if (why := duration_problem(value)) is not None:
                yield f"{base}.timeouts.{field}", why, DURATION_HINT
        request = parse_duration(timeouts.request or "")
        attempt = parse_duration(timeouts.backend_request or "")
        if request and attempt and attempt > request:
            yield (f"{base}.timeouts.backendRequest",
                   f"an attempt ({timeouts.backend_request}) cannot outlast the whole request "
                   f"({timeouts.request})", "make backendRequest at most request")
    if rule.retry is not None and (why := duration_problem(rule.retry.backoff)) is not None:
        yield f"{base}.retry.backoff", why, DURATION_HINT
