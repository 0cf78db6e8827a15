"""tulle's state is its user's alone whatever the umask: directories 0700 (existing ones
tightened, another user's refused), files 0600 (existing ones tightened)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tulle.errors import StateError
from tulle.local import acquire_state_lock
from tulle.settings import (
    StatePaths,
    create_private,
    ensure_private_dir,
    open_private,
    write_private,
)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The loosest umask there is: anything tulle does not set explicitly would be 0666."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("open_umask")
def test_directories_and_their_missing_parents_are_made_0700(tmp_path: Path) -> None:
    state = tmp_path / "a" / "b" / "state"
    StatePaths(state).ensure()
    assert [mode(p) for p in (tmp_path / "a", tmp_path / "a" / "b", state,
                              state / "workloads")] == [0o700] * 4


def test_an_existing_directory_is_tightened(tmp_path: Path) -> None:
    state = tmp_path / "state"
    (state / "workloads").mkdir(parents=True)
    state.chmod(0o755)
    (state / "workloads").chmod(0o777)
    StatePaths(state).ensure()
    assert (mode(state), mode(state / "workloads")) == (0o700, 0o700)


def test_another_users_directory_is_refused(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    owner = os.geteuid()
    monkeypatch.setattr("os.geteuid", lambda: owner + 1)
    with pytest.raises(StateError) as caught:
        ensure_private_dir(tmp_path)
    assert caught.value.message == f"{tmp_path} belongs to another user (uid {owner})"
    assert caught.value.hint is not None and "--state-dir" in caught.value.hint


def test_a_file_where_the_directory_should_be_is_refused(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("")
    with pytest.raises(StateError, match="is not a directory"):
        StatePaths(tmp_path / "state").ensure()


@pytest.mark.usefixtures("open_umask")
def test_files_are_made_0600_and_existing_ones_tightened(tmp_path: Path) -> None:
    loose = tmp_path / "loose.log"
    loose.write_text("old\n")
    loose.chmod(0o666)
    create_private(loose)
    create_private(tmp_path / "new.log")
    os.close(open_private(tmp_path / "opened.log"))
    write_private(tmp_path / "secret", "s3cr3t\n")
    assert {p.name: mode(p) for p in tmp_path.iterdir()} == {
        "loose.log": 0o600, "new.log": 0o600, "opened.log": 0o600, "secret": 0o600}
    assert loose.read_text() == "old\n"  # tightened, not truncated


@pytest.mark.usefixtures("open_umask")
def test_the_state_lock_is_0600(tmp_path: Path) -> None:
    paths = StatePaths(tmp_path / "state")
    paths.ensure()
    handle = acquire_state_lock(paths)
    try:
        assert mode(paths.lock_file) == 0o600
        assert paths.lock_file.read_text() == f"{os.getpid()}\n"
    finally:
        handle.close()
