"""What a neighbour could do with a hostile file or with files tulle leaves open to it.

Found before (issue 14): a YAML alias bomb passed to `tulle apply -f` took the CLI to 6.2 GB
RSS for 56 s before a confusing "HTTP 413"; a state directory that already existed with mode
0755 stayed 0755; under umask 000 the lock file and agent.log were created 0666 (writable by
every local user).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.security.support import exposed_root, probe, require_root
from tests.support.mesh import TULLE, Mesh

MB = 1 << 20

# Runs a command under an address-space limit (so a regression cannot eat the shared machine)
# and reports its exit code, stderr and peak RSS: ru_maxrss of our only child.
PEAK_RSS = """
import json, resource, subprocess, sys
def limit():
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
done = subprocess.run(sys.argv[1:], capture_output=True, text=True, preexec_fn=limit,
                      timeout=120)
print(json.dumps({"code": done.returncode, "stderr": done.stderr[-2000:],
                  "peak_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
"""

BOMB = "\n".join([
    "apiVersion: tulle.io/v1alpha1",
    "kind: Service",
    "metadata: {name: lol}",
    'spec: {protocol: http, l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"',
    '  , "lol"]',
    *(f"  , l{n}: &l{n} [{', '.join([f'*l{n - 1}'] * 9)}]" for n in range(1, 10)),
    "  }",
]) + "\n"

LIST_DIR = """
import os, sys
try:
    print(len(os.listdir(sys.argv[1])))
except OSError as e:
    print(type(e).__name__)
"""


def test_a_yaml_alias_bomb_fails_fast_in_little_memory(exposed_mesh: Mesh,
                                                        tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(BOMB)
    assert len(BOMB) < 1000  # a billion "lol"s once expanded
    command = [*TULLE, "--state-dir", str(exposed_mesh.state_dir), "apply", "-f", str(bomb)]
    done = subprocess.run([sys.executable, "-c", PEAK_RSS, *command], capture_output=True,
                          text=True, timeout=150, env=exposed_mesh.env(), check=True)
    result = json.loads(done.stdout)
    print(f"apply -f of an alias bomb: peak RSS {result['peak_kib'] >> 10} MB")
    assert result["code"] == 1, result
    assert f"{bomb}:" in result["stderr"], result  # names the file and the line
    assert "aliases (*name) expand this document by more than" in result["stderr"], result
    assert "write the repeated parts out" in result["stderr"], result  # and the fix
    assert "Traceback" not in result["stderr"], result
    assert result["peak_kib"] << 10 < 200 * MB, result


@contextmanager
def mesh_under(root: Path, umask: int) -> Iterator[Mesh]:
    """A mesh whose processes (`tulle up`, `tulle run` and what they start) inherit ``umask``."""
    mesh = Mesh(root)
    previous = os.umask(umask)
    try:
        yield mesh
    finally:
        os.umask(previous)
        mesh.close()


def modes(directory: Path) -> dict[str, int]:
    """Every file and directory under ``directory`` (itself as "."), with its permission bits."""
    found = {".": stat.S_IMODE(directory.lstat().st_mode)}
    for path in directory.rglob("*"):
        found[str(path.relative_to(directory))] = stat.S_IMODE(path.lstat().st_mode)
    return found


def loose(directory: Path) -> dict[str, str]:
    """What is not its user's alone: directories not 0700, files not 0600, anything else
    (sockets) open to the group or others."""
    out = {}
    for name, mode in modes(directory).items():
        path = directory / name
        kind = path.lstat().st_mode
        wanted = 0o700 if stat.S_ISDIR(kind) else 0o600 if stat.S_ISREG(kind) else None
        if (mode != wanted) if wanted is not None else (mode & 0o077):
            out[name] = oct(mode)
    return out


ACCESS_LOG = """\
apiVersion: tulle.io/v1alpha1
kind: Service
metadata: {name: books}
spec: {accessLog: {enabled: true}}
"""


def test_under_umask_000_every_file_is_private() -> None:
    require_root()
    with exposed_root() as root, mesh_under(root, 0o000) as mesh:
        mesh.up()
        mesh.cli("apply", "-f", "-", stdin=ACCESS_LOG)
        books = mesh.run("books", name="books-1")
        web = mesh.run("web", name="web-1")
        mesh.wait_endpoints("web-1", "books", {"books-1"})
        assert books and mesh.call(web, "http://books/")["status"] == 200
        state = mesh.state_dir
        workload = mesh.paths.workload_dir("default", "books-1")
        # Files each component creates: the control plane, the agent, Envoy, the keys.
        expected = ["controlplane.lock", "controlplane.log", "api-token", "metrics-token",
                    "store.db", "controlplane.json", "ca/state.json", "ca/controlplane.key",
                    "workloads/books-1.default/agent.log", "workloads/books-1.default/envoy.log",
                    "workloads/books-1.default/bootstrap.json",
                    "workloads/books-1.default/access.log"]
        present = modes(state)
        assert [name for name in expected if name not in present] == [], sorted(present)
        assert any(name.startswith("workloads/books-1.default/identity/key-") for name in present)
        print(json.dumps({name: oct(mode) for name, mode in sorted(present.items())}, indent=1))
        assert loose(state) == {}
        # And the neighbour sees nothing of it.
        for directory in (state, workload):
            assert probe(LIST_DIR, str(directory)).stdout.strip() == "PermissionError"


def test_an_existing_open_state_directory_is_tightened() -> None:
    """As an older tulle, or a user's mkdir, may have left it: 0755 and 0666 under 0755."""
    require_root()
    with exposed_root() as root, mesh_under(root, 0o022) as mesh:
        state = mesh.state_dir
        for directory in (state, state / "workloads", state / "ca",
                          state / "workloads" / "books-1.default"):
            directory.mkdir(mode=0o755)
            directory.chmod(0o755)
        for name in ("controlplane.lock", "controlplane.log",
                     "workloads/books-1.default/agent.log"):
            (state / name).write_text("")
            (state / name).chmod(0o666)
        assert probe(LIST_DIR, str(state)).stdout.strip() == "4"  # the neighbour's view
        mesh.up()
        mesh.run("books", name="books-1")
        assert loose(state) == {}
        assert probe(LIST_DIR, str(state)).stdout.strip() == "PermissionError"


def test_a_state_directory_of_another_user_is_refused() -> None:
    require_root()
    with exposed_root() as root:
        mesh = Mesh(root)
        mesh.state_dir.mkdir(mode=0o700)
        os.chown(mesh.state_dir, 65534, 65534)  # nobody's: it could swap our files
        result = mesh.cli("up", *mesh.port_flags(), check=False)
        assert result.returncode != 0
        assert f"{mesh.state_dir} belongs to another user (uid 65534)" in result.stderr
        assert "--state-dir" in result.stderr
        assert list(mesh.state_dir.iterdir()) == []  # nothing written into it
