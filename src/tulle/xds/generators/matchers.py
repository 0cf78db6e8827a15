"""Gateway API matches to Envoy matchers, and their precedence."""

from __future__ import annotations

from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.type.matcher.v3 import regex_pb2, string_pb2

from tulle.model.httproute import PathMatch, RouteMatch
from tulle.model.paths import prefix_rewrite, segment_prefix


def string_matcher(value: str, kind: str) -> string_pb2.StringMatcher:
    if kind == "RegularExpression":
        return string_pb2.StringMatcher(safe_regex=regex_pb2.RegexMatcher(regex=value))
    return string_pb2.StringMatcher(exact=value)


def header_matcher(name: str, value: str, kind: str) -> rc.HeaderMatcher:
    return rc.HeaderMatcher(name=name.lower(), string_match=string_matcher(value, kind))


def route_match(match: RouteMatch) -> rc.RouteMatch:
    out = path_match(match.path)
    for header in match.headers:
        out.headers.append(header_matcher(header.name, header.value, header.type))
    if match.method is not None:
        out.headers.append(rc.HeaderMatcher(name=":method",
                                            string_match=string_pb2.StringMatcher(
                                                exact=match.method)))
    for param in match.query_params:
        out.query_parameters.append(rc.QueryParameterMatcher(
            name=param.name, string_match=string_matcher(param.value, param.type)))
    return out


def path_match(path: PathMatch) -> rc.RouteMatch:
    if path.type == "Exact":
        return rc.RouteMatch(path=path.value)
    if path.type == "RegularExpression":
        return rc.RouteMatch(safe_regex=regex_pb2.RegexMatcher(regex=path.value))
    prefix = segment_prefix(path.value)
    if prefix == "/":
        return rc.RouteMatch(prefix="/")
    # Gateway API prefixes match whole path segments: /books matches /books/1, not /booksx.
    return rc.RouteMatch(path_separated_prefix=prefix)


def prefix_rewrite_regex(prefix: str, replacement: str) -> regex_pb2.RegexMatchAndSubstitute:
    pattern, substitution = prefix_rewrite(prefix, replacement)
    return regex_pb2.RegexMatchAndSubstitute(pattern=regex_pb2.RegexMatcher(regex=pattern),
                                      substitution=substitution)


def full_path_rewrite(path: str) -> regex_pb2.RegexMatchAndSubstitute:
    return regex_pb2.RegexMatchAndSubstitute(pattern=regex_pb2.RegexMatcher(regex="^.*$"),
                                      substitution=path.replace("\\", "\\\\"))
