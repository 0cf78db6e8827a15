"""Analyzer messages as people read them: in `tulle analyze`, and as the warnings of
`tulle apply` and `tulle rollback`, which are the same messages (code, resource, file and line,
field, what is wrong, the fix, the docs page) in the same words.

They arrive as the API's JSON (``Message.to_dict()``), so nothing here imports the analyzers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def render_message(message: Mapping[str, Any]) -> list[str]:
    resource = message["resource"]
    name = f"{resource['namespace']}/{resource['name']}" if resource["namespace"] \
        else resource["name"]
    where = "  ".join(part for part in (f"{resource['kind']} {name}", message["source"],
                                           message["field"]) if part)
    return [f"{message['level'].upper():<8}{message['code']}  {where}",
            f"        {message['message']}",
            f"        fix: {message['fix']}",
            f"        docs: {message['docs']}"]


def render_warnings(messages: Sequence[Mapping[str, Any]], what: str) -> str:
    """The messages a change (``what``: "apply", "rollback") introduces. They never block
    it, so they are warnings whatever their analyzer level, which each one still shows."""
    count = len(messages)
    lines = [f"warning: this {what} introduces {count} analyzer message"
             f"{'s' if count != 1 else ''}; they do not block it (`tulle analyze` lists every "
             "message, older ones too):"]
    for index, message in enumerate(messages):
        if index:
            lines.append("")  # a blank line between messages, as analyze prints them
        lines += render_message(message)
    return "\n".join(lines)
