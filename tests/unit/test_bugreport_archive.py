"""Bug-report archive: deadlines and failures go to the manifest, files are redacted, 0600."""

from __future__ import annotations

import json
import stat
import tarfile
import threading
from pathlib import Path

from tulle.bugreport.archive import collect, write
from tulle.bugreport.collectors import Collector
from tulle.bugreport.redact import Redactor

KEY = "-----BEGIN PRIVATE KEY-----\nQUJD\n-----END PRIVATE KEY-----"


def test_failures_and_deadlines_are_recorded_and_the_rest_is_written(tmp_path: Path) -> None:
    release = threading.Event()

    def hangs() -> str:
        release.wait(10)
        return "late"

    def fails() -> str:
        raise RuntimeError("no agent token-abcdefgh12345 here")

    collectors = [Collector("slow.txt", hangs, deadline_s=0.2),
                  Collector("broken.json", fails),
                  Collector("good.json", lambda: {"tls": {"private_key": "x"}, "pem": KEY}),
                  Collector("log.txt", lambda: "Authorization: Basic abc\nok\n")]
    redactor = Redactor.of(["token-abcdefgh12345"])
    outcomes = collect(collectors, redactor)
    release.set()
    assert [(o.path, o.ok) for o in outcomes] == [
        ("slow.txt", False), ("broken.json", False), ("good.json", True), ("log.txt", True)]
    assert "deadline of 0s exceeded" in str(outcomes[0].error)
    assert outcomes[1].error == "RuntimeError: no agent [redacted] here"

    target = tmp_path / "report.tar.gz"
    target.write_bytes(b"old")
    target.chmod(0o644)
    write(target, outcomes, redactor, {"proxies": []})
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    with tarfile.open(target) as archive:
        files = {m.name: archive.extractfile(m).read()  # type: ignore[union-attr]
                 for m in archive.getmembers()}
    assert sorted(files) == ["tulle-bug-report/good.json", "tulle-bug-report/log.txt",
                             "tulle-bug-report/manifest.json"]
    assert json.loads(files["tulle-bug-report/good.json"]) == {
        "tls": {"private_key": "[redacted]"}, "pem": "[redacted]"}
    assert files["tulle-bug-report/log.txt"] == b"Authorization: [redacted]\nok\n"
    manifest = json.loads(files["tulle-bug-report/manifest.json"])
    assert [(f["file"], f["ok"]) for f in manifest["files"]] == [
        ("slow.txt", False), ("broken.json", False), ("good.json", True), ("log.txt", True)]
    assert not list(tmp_path.glob(".*partial"))
