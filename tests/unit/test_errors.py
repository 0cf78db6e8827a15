"""Errors survive the trip through the API's JSON and render the same on both sides."""

from __future__ import annotations

import json

import pytest

from tulle.errors import (
    ApiError,
    AuthError,
    ConfigError,
    ConflictError,
    ControlPlaneUnavailable,
    EnvoyError,
    NotFoundError,
    Problem,
    StateError,
    TulleError,
    UsageError,
    error_from_dict,
)

SIMPLE = [UsageError, NotFoundError, ConflictError, AuthError, ControlPlaneUnavailable,
          StateError, EnvoyError, ApiError]


def round_trip(error: TulleError) -> TulleError:
    return error_from_dict(json.loads(json.dumps(error.to_dict())))


@pytest.mark.parametrize("cls", SIMPLE, ids=[c.__name__ for c in SIMPLE])
@pytest.mark.parametrize("hint", [None, "run `tulle up`"], ids=["no-hint", "hint"])
def test_round_trip_keeps_type_message_and_hint(cls: type[TulleError], hint: str | None) -> None:
    error = cls("the thing went wrong", hint=hint)
    again = round_trip(error)
    assert type(again) is cls
    assert (again.message, again.hint, again.exit_code) == (error.message, hint, error.exit_code)
    assert again.render() == error.render()


def test_every_kind_is_distinct() -> None:
    kinds = [cls.kind for cls in [*SIMPLE, ConfigError]]
    assert len(set(kinds)) == len(kinds)


def test_config_error_round_trip_keeps_every_problem() -> None:
    error = ConfigError([
        Problem("unknown field", source="a.yaml:1", resource="Service default/a",
                field="spec.protocl", hint='did you mean "protocol"?'),
        Problem("route has no backend", source="b.yaml:3", level="warning"),
        Problem("bare message"),
    ])
    again = round_trip(error)
    assert isinstance(again, ConfigError)
    assert again.problems == error.problems
    assert again.message == "3 problems found; nothing was applied"
    assert again.render() == error.render()


def test_config_error_with_its_own_message() -> None:
    again = round_trip(ConfigError([], message="the request body is not JSON"))
    assert isinstance(again, ConfigError)
    assert (again.message, again.problems) == ("the request body is not JSON", ())


@pytest.mark.parametrize(("body", "cls", "message"), [
    ({}, ApiError, "the control plane reported an error"),
    ({"type": "teapot", "message": "short and stout"}, ApiError, "short and stout"),
    ({"type": "not_found", "message": "gone", "hint": ""}, NotFoundError, "gone"),
    ({"type": "config", "message": "bad", "problems": [{"message": "x", "unknown": 1}]},
     ConfigError, "bad"),
], ids=["empty", "unknown-type", "empty-hint", "extra-problem-keys"])
def test_unexpected_bodies_still_give_an_error(body: dict[str, object], cls: type[TulleError],
                                               message: str) -> None:
    error = error_from_dict(body)
    assert type(error) is cls
    assert error.message == message
    assert error.hint is None


def test_config_error_render() -> None:
    error = ConfigError([
        Problem("unknown field \"protocl\"", source="svc.yaml:4", resource="Service default/a",
                field="spec.protocl", hint='did you mean "protocol"?'),
        Problem("no source or field", resource="HTTPRoute shop/r"),
        Problem("nothing but a message"),
    ])
    assert error.render() == (
        "error: 3 problems found; nothing was applied\n"
        '  svc.yaml:4: Service default/a: spec.protocl: unknown field "protocl"\n'
        '    hint: did you mean "protocol"?\n'
        "  HTTPRoute shop/r: no source or field\n"
        "  nothing but a message")
    assert str(error).splitlines()[0] == "3 problems found; nothing was applied"


def test_single_problem_summary_and_plain_render() -> None:
    error = ConfigError([Problem("bad", field="spec")])
    assert error.render() == "error: 1 problem found; nothing was applied\n  spec: bad"
    assert UsageError("no files").render() == "error: no files"
    assert UsageError("no files", hint="pass -f").render() == "error: no files\n  hint: pass -f"
