"""Reading `tulle apply -f` targets: sources point at lines, bad YAML points at the spot."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from tulle.cli.loader import load_documents
from tulle.errors import ConfigError, UsageError

# (case, file text, expected (line, document) of each document)
DOCUMENTS: list[tuple[str, str, list[tuple[int, object]]]] = [
    ("single document", "a: 1\n", [(1, {"a": 1})]),
    ("leading separator and comments", "# header\n---\n# about a\na: 1\n", [(4, {"a": 1})]),
    ("several documents", "a: 1\n---\nb: 2\nc: 3\n---\n\n\nd: 4\n",
     [(1, {"a": 1}), (3, {"b": 2, "c": 3}), (8, {"d": 4})]),
    ("empty and comment-only documents skipped", "---\n---\n# nothing\n---\na: 1\n---\n...\n",
     [(5, {"a": 1})]),
    ("explicit null document skipped", "null\n---\n~\n---\na: 1\n", [(5, {"a": 1})]),
    ("non-mapping documents are kept for the parser to judge", "- a\n---\nhello\n",
     [(1, ["a"]), (3, "hello")]),
    ("JSON is YAML", '{"a": [1, 2], "b": {"c": null}}', [(1, {"a": [1, 2], "b": {"c": None}})]),
    ("dates stay as written", "d: 2024-01-31\nt: 2024-01-31T10:20:30Z\n",
     [(1, {"d": "2024-01-31", "t": "2024-01-31T10:20:30Z"})]),
    ("merge keys may be overridden", "base: &b {x: 1, y: 2}\nuse:\n  <<: *b\n  x: 3\n",
     [(1, {"base": {"x": 1, "y": 2}, "use": {"x": 3, "y": 2}})]),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in DOCUMENTS],
                         ids=[c[0] for c in DOCUMENTS])
def test_documents_and_their_lines(tmp_path: Path, text: str,
                                   expected: list[tuple[int, object]]) -> None:
    path = tmp_path / "res.yaml"
    path.write_text(text)
    loaded = load_documents([str(path)])
    assert loaded == [{"source": f"{path}:{line}", "manifest": body} for line, body in expected]
    json.dumps(loaded)  # what the CLI sends to the API must be JSON


# (case, file text, (line, column) of the problem, message parts, hint part or "" for none)
MALFORMED: list[tuple[str, str, tuple[int, int], list[str], str]] = [
    ("unclosed flow sequence", "kind: Service\nmetadata:\n  name: [x\n", (4, 1),
     ["malformed YAML: expected ',' or ']', but got '<stream end>'",
      "(while parsing a flow sequence that starts at line 3, column 9)"], "fix the syntax"),
    ("bad indentation", "a: 1\n b: 2\n", (2, 3),
     ["malformed YAML: mapping values are not allowed here"], "indentation"),
    ("block mapping broken by a sequence", "spec:\n  a: 1\n - b\n", (3, 2),
     ["expected <block end>, but found '<block sequence start>'",
      "(while parsing a block mapping that starts at line 1, column 1)"], "fix the syntax"),
    ("tab indentation", "a:\n\t- b\n", (2, 1),
     ["found character '\\t' that cannot start any token"], "fix the syntax"),
    ("unclosed quote in the second document", "a: 1\n---\nb: 'x\n", (4, 1),
     ["found unexpected end of stream",
      "(while scanning a quoted scalar that starts at line 3, column 4)"], "fix the syntax"),
    ("duplicate key", "spec:\n  rules: [a]\n  parentRefs: []\n  rules: [b]\n", (4, 3),
     ['found duplicate key "rules" (first defined at line 2); keep only one'], ""),
    ("duplicate key in JSON", '{"a": 1,\n "a": 2}', (2, 2), ['duplicate key "a"'], ""),
    ("unknown tag", "a: !Ref x\n", (1, 4), ["could not determine a constructor for the tag '!Ref'"],
     ""),
    ("binary has no JSON form", "a: !!binary aGk=\n", (1, 4), ["tag:yaml.org,2002:binary"], ""),
    ("set has no JSON form", "a: !!set {x}\n", (1, 4), ["tag:yaml.org,2002:set"], ""),
]


@pytest.mark.parametrize(("text", "where", "message_parts", "hint"),
                         [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED])
def test_malformed_yaml_points_at_the_spot(tmp_path: Path, text: str, where: tuple[int, int],
                                           message_parts: list[str], hint: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_documents([str(path)])
    (problem,) = caught.value.problems
    assert problem.source == f"{path}:{where[0]}:{where[1]}"
    for part in message_parts:
        assert part in problem.message
    assert (hint in problem.hint) if hint else problem.hint == ""


def test_problems_of_every_file_are_reported_together(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("a: [\n")
    (tmp_path / "b.yaml").write_text("ok: 1\n")
    (tmp_path / "c.yaml").write_text("x: 1\nx: 2\n")
    with pytest.raises(ConfigError) as caught:
        load_documents([str(tmp_path)])
    assert [p.source.rsplit("/", 1)[-1] for p in caught.value.problems] == [
        "a.yaml:2:1", "c.yaml:2:1"]


def test_directory_read_recursively_in_sorted_order(tmp_path: Path) -> None:
    files = {"b.yaml": "n: b\n", "a.yml": "n: a\n---\nn: a2\n", "sub/c.json": '{"n": "c"}',
             "sub/deeper/d.yaml": "n: d\n", "notes.txt": "n: ignored\n",
             "README.md": "n: ignored\n", "e.YAML.bak": "n: ignored\n",
             ".git/config.yaml": "n: hidden\n", ".hidden.yaml": "n: hidden\n"}
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    (tmp_path / "dir.yaml").mkdir()  # a directory with a resource suffix is not a file
    loaded = load_documents([str(tmp_path)])
    assert [(d["source"].removeprefix(f"{tmp_path}/"), d["manifest"]["n"]) for d in loaded] == [
        ("a.yml:1", "a"), ("a.yml:3", "a2"), ("b.yaml:1", "b"), ("sub/c.json:1", "c"),
        ("sub/deeper/d.yaml:1", "d")]


def test_targets_are_read_in_the_order_given(tmp_path: Path) -> None:
    (tmp_path / "z.yaml").write_text("n: z\n")
    (tmp_path / "a.yaml").write_text("n: a\n")
    loaded = load_documents([str(tmp_path / "z.yaml"), str(tmp_path / "a.yaml")])
    assert [d["manifest"]["n"] for d in loaded] == ["z", "a"]


def test_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("a: 1\n---\nb: 2\n"))
    assert load_documents(["-"]) == [{"source": "<stdin>:1", "manifest": {"a": 1}},
                                     {"source": "<stdin>:3", "manifest": {"b": 2}}]


def test_malformed_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("a: [\n"))
    with pytest.raises(ConfigError) as caught:
        load_documents(["-"])
    assert caught.value.problems[0].source == "<stdin>:2:1"


def test_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(UsageError) as caught:
        load_documents([str(missing)])
    assert caught.value.message == f"{missing}: no such file or directory"
    assert caught.value.exit_code == 2


def test_nothing_to_apply_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "empty.yaml").write_text("# nothing here\n---\n")
    with pytest.raises(UsageError, match="no resources found in") as caught:
        load_documents([str(tmp_path / "empty.yaml"), str(tmp_path)])
    assert caught.value.hint is not None
    assert "- for stdin" in caught.value.hint


def test_unreadable_file_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(UsageError, match="cannot read"):
        load_documents([str(path)])


# -- bounded input: a hostile file fails fast, in little memory, naming the file and the fix

def _laughs(levels: int, width: int = 9) -> str:
    """The "billion laughs": each level lists ``width`` aliases of the level below."""
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, levels + 1):
        lines.append(f"l{level}: &l{level} [{', '.join([f'*l{level - 1}'] * width)}]")
    return "\n".join(lines) + "\n"


# (case, file text, (line, column) of the problem, message part, hint part)
REFUSED: list[tuple[str, str, tuple[int, int], str, str]] = [
    ("alias bomb", _laughs(9), (6, 5), "aliases (*name) expand this document by more than 1 MiB",
     "write the repeated parts out"),
    ("a large scalar repeated by aliases", "big: &big " + "x" * 300_000 + "\nuse: ["
     + ", ".join(["*big"] * 5) + "]\n", (2, 6), "expand this document by more than", "anchors"),
    ("an alias inside its own anchor", "a: &a [1, *a]\n", (1, 4),
     "refers to a node that contains it", "remove the alias"),
    ("nested too deeply", "a: " + "[" * 150 + "]" * 150 + "\n", (1, 103),
     "nests more than 100 levels deep", "check the indentation"),
]


@pytest.mark.parametrize(("text", "where", "message", "hint"), [c[1:] for c in REFUSED],
                         ids=[c[0] for c in REFUSED])
def test_documents_that_expand_too_far_are_refused_before_being_built(
        tmp_path: Path, text: str, where: tuple[int, int], message: str, hint: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_documents([str(path)])
    (problem,) = caught.value.problems
    assert problem.source == f"{path}:{where[0]}:{where[1]}"
    assert message in problem.message
    assert hint in problem.hint


def test_nesting_deeper_than_the_parser_can_go_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("a: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError) as caught:
        load_documents([str(path)])
    (problem,) = caught.value.problems
    assert problem.source == str(path)
    assert "nests more than 100 levels deep" in problem.message


def test_small_anchors_and_aliases_still_work(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(_laughs(3) + "defaults: &d {timeout: 1s, retries: 2}\n"
                    "routes:\n- {<<: *d, name: a}\n- {<<: *d, name: b, retries: 3}\n")
    (loaded,) = load_documents([str(path)])
    manifest = loaded["manifest"]
    assert len(manifest["l3"]) == 9 and manifest["l3"][0][0][0] == ["lol"] * 9
    assert manifest["routes"] == [{"timeout": "1s", "retries": 2, "name": "a"},
                                  {"timeout": "1s", "retries": 3, "name": "b"}]
    assert len(json.dumps(loaded)) > 9 ** 4 * 5  # what the CLI sends: every alias expanded


def test_a_file_above_the_size_limit_is_not_read(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tulle.cli.loader.MAX_FILE_BYTES", 1024)
    path = tmp_path / "big.yaml"
    path.write_text("a: 1\n" * 300)
    with pytest.raises(UsageError) as caught:
        load_documents([str(path)])
    assert caught.value.message.startswith(f"{path}: larger than")
    assert caught.value.hint == "split it into several files"
    monkeypatch.setattr("sys.stdin", io.StringIO("a: 1\n" * 300))
    with pytest.raises(UsageError, match="<stdin>: larger than"):
        load_documents(["-"])


def test_files_that_add_up_to_more_than_one_apply_may_send_are_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tulle.cli.loader.MAX_TOTAL_BYTES", 1000)
    for name in ("a.yaml", "b.yaml", "c.yaml"):
        (tmp_path / name).write_text("a: 1\n" * 80)
    with pytest.raises(UsageError) as caught:
        load_documents([str(tmp_path)])
    assert caught.value.message.startswith(f"{tmp_path / 'c.yaml'}: the files to apply add up")
    assert caught.value.hint == "apply them in several commands"
