"""`tulle prometheus config`: the targets file and the scrape config it prints."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
import yaml

from tulle.cli.cmd_prometheus import render_config, scrape_config, target_groups, write_targets
from tulle.errors import StateError

WORKLOADS = [
    {"name": "web-1", "namespace": "shop", "service": "web", "address": "127.0.0.1",
     "agentPort": 41002, "state": "ready"},
    {"name": "books-1", "namespace": "default", "service": "books", "address": "10.0.0.5",
     "agentPort": 41001, "state": "starting"},
]


def test_one_target_group_per_workload_labelled_like_its_metrics() -> None:
    assert target_groups(WORKLOADS) == [
        {"targets": ["10.0.0.5:41001"],
         "labels": {"namespace": "default", "workload": "books-1", "service": "books"}},
        {"targets": ["127.0.0.1:41002"],
         "labels": {"namespace": "shop", "workload": "web-1", "service": "web"}},
    ]
    assert target_groups([]) == []


def test_scrape_config_has_a_job_for_the_control_plane_and_one_for_sidecars() -> None:
    config = scrape_config("127.0.0.1:15700", Path("/s/metrics-token"),
                           Path("/s/prometheus/tulle-sidecars.json"))
    text = render_config(config, Path("/s"), Path("/s/prometheus/tulle-sidecars.json"))
    assert text.startswith("# Prometheus scrape config for the tulle mesh in /s.")
    auth = {"type": "Bearer", "credentials_file": "/s/metrics-token"}
    assert yaml.safe_load(text) == {"scrape_configs": [
        {"job_name": "tulle-controlplane", "metrics_path": "/metrics", "authorization": auth,
         "static_configs": [{"targets": ["127.0.0.1:15700"]}]},
        {"job_name": "tulle-sidecars", "metrics_path": "/metrics", "honor_labels": True,
         "authorization": auth,
         "file_sd_configs": [{"files": ["/s/prometheus/tulle-sidecars.json"]}]},
    ]}


def test_targets_file_is_replaced_whole_and_readable_by_prometheus(tmp_path: Path) -> None:
    path = tmp_path / "new" / "tulle-sidecars.json"
    write_targets(path, target_groups(WORKLOADS))
    write_targets(path, target_groups(WORKLOADS[:1]))
    assert [g["labels"]["workload"] for g in json.loads(path.read_text())] == ["web-1"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left


def test_an_unwritable_directory_is_an_error_with_a_hint(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StateError) as caught:
        write_targets(blocker / "tulle-sidecars.json", [])
    assert "--output-dir" in (caught.value.hint or "")
