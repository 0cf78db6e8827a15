"""`tulle history` and `tulle rollback` rendering: readable YAML diffs."""

from __future__ import annotations

from tulle.cli.cmd_history import manifest_diff, render_history, render_rollback

V1 = {"kind": "HTTPRoute", "metadata": {"name": "books"}, "spec": {"rules": [{"w": 1}]}}
V2 = {"kind": "HTTPRoute", "metadata": {"name": "books"}, "spec": {"rules": [{"w": 2}]}}


def test_diff_of_an_update_shows_only_the_changed_lines() -> None:
    diff = manifest_diff(V1, V2, "HTTPRoute default/books")
    assert diff[0] == "--- HTTPRoute default/books (before)"
    assert diff[1] == "+++ HTTPRoute default/books (after)"
    assert "-  - w: 1" in diff and "+  - w: 2" in diff
    assert not any(line.startswith(("-", "+")) and "books" in line for line in diff[2:])


def test_diff_of_a_create_and_a_delete() -> None:
    created = manifest_diff(None, V1, "x")
    assert created[0] == "--- /dev/null" and all(
        line.startswith("+") for line in created[3:])
    deleted = manifest_diff(V1, None, "x")
    assert deleted[1] == "+++ /dev/null" and all(line.startswith("-") for line in deleted[3:])
    assert manifest_diff(V1, V1, "x") == []


def test_history_table_has_each_revision_and_its_diff() -> None:
    text = render_history([
        {"revision": 2, "at": 0.0, "kind": "HTTPRoute", "namespace": "default",
         "name": "books", "action": "configured", "before": V1, "after": V2},
        {"revision": 1, "at": 0.0, "kind": "HTTPRoute", "namespace": "default",
         "name": "books", "action": "created", "before": None, "after": V1}])
    first, second = text.split("\n\n")
    assert first.startswith("REVISION 2 ") and "configured  HTTPRoute default/books" in first
    assert "    +  - w: 2" in first
    assert second.startswith("REVISION 1 ") and "created" in second
    assert render_history([]) == "No changes yet."


def test_rollback_text_names_the_new_revision_and_each_change() -> None:
    change = {"kind": "HTTPRoute", "namespace": "default", "name": "books",
              "action": "configured", "before": V2, "after": V1}
    done = render_rollback({"revision": 1, "dryRun": False, "newRevision": 3,
                            "changes": [change]})
    assert done.splitlines() == ["Rolled back to revision 1 as new revision 3:",
                                 "  httproute/books (default) configured"]
    dry = render_rollback({"revision": 1, "dryRun": True, "newRevision": None,
                           "changes": [change]})
    assert "dry run" in dry and "    +  - w: 1" in dry
    assert "nothing to change" in render_rollback({"revision": 1, "dryRun": False,
                                                    "newRevision": None, "changes": []})


def test_revert_text_says_revert_and_which_revision() -> None:
    change = {"kind": "HTTPRoute", "namespace": "default", "name": "books",
              "action": "configured", "before": V2, "after": V1}
    done = render_rollback({"mode": "revert", "revision": 2, "dryRun": False,
                            "newRevision": 4, "changes": [change]})
    assert done.splitlines() == ["Reverted revision 2 as new revision 4:",
                                 "  httproute/books (default) configured"]
    dry = render_rollback({"mode": "revert", "revision": 2, "dryRun": True,
                           "newRevision": None, "changes": [change]})
    assert dry.startswith("Reverting revision 2 would change (dry run")
    assert "    +  - w: 1" in dry
    assert "already undone" in render_rollback({"mode": "revert", "revision": 2,
                                                "dryRun": False, "changes": []})
