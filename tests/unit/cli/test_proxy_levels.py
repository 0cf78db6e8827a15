"""`tulle proxy log-level` arguments."""

from __future__ import annotations

import pytest

from tulle.cli.cmd_proxy import level_request, render_levels
from tulle.errors import UsageError


@pytest.mark.parametrize(("args", "body"), [
    ([], {}),
    (["debug"], {"level": "debug"}),
    (["upstream=debug", "http=info"], {"levels": {"upstream": "debug", "http": "info"}}),
])
def test_arguments_become_a_request(args: list[str], body: dict[str, object]) -> None:
    assert level_request(args) == body


@pytest.mark.parametrize("args", [["debug", "info"], ["debug", "http=info"], ["=debug"],
                                  ["http="]])
def test_bad_arguments_are_refused(args: list[str]) -> None:
    with pytest.raises(UsageError):
        level_request(args)


def test_render_shows_only_the_changed_components_when_asked() -> None:
    result = {"node": "web-1.default", "loggers": {"http": "info", "upstream": "debug"}}
    assert render_levels(result, {"upstream"}).splitlines() == [
        "Proxy web-1.default", "COMPONENT   LEVEL", "upstream    debug"]
    assert len(render_levels(result).splitlines()) == 4
