"""`tulle prometheus config`: how Prometheus scrapes the mesh in universal mode.

Two jobs: the control plane (a static target, the API port) and the sidecars (file-based
service discovery: a JSON file of every workload's agent, written next to the config and
refreshed each time the command runs). Both authenticate with the read-only metrics token.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from tulle.cli.slo_rules import rule_file
from tulle.client import ApiClient
from tulle.errors import StateError
from tulle.model.parse import resource_from_manifest
from tulle.model.slo import mesh_slos
from tulle.settings import ControlPlaneEndpoint, StatePaths

prometheus = typer.Typer(help="Prometheus: scrape configuration for the mesh's metrics, and "
                              "rules for its ServiceLevelObjectives.",
                         no_args_is_help=True)

CONTROLPLANE_JOB = "tulle-controlplane"
SIDECARS_JOB = "tulle-sidecars"
TARGETS_FILE = "tulle-sidecars.json"
METRICS_PATH = "/metrics"


def register(app: typer.Typer) -> None:
    app.add_typer(prometheus, name="prometheus")


@prometheus.command()
def config(
    ctx: typer.Context,
    output_dir: Annotated[Path | None, typer.Option(
        "--output-dir", help="Where to write the sidecar targets file "
                             "(default: STATE_DIR/prometheus)")] = None,
) -> None:
    """Print a scrape config; write (or refresh) the file of sidecar targets it reads.

    Run it again when workloads come and go: Prometheus notices the new targets file.
    """
    paths: StatePaths = ctx.obj.paths
    endpoint = ControlPlaneEndpoint.load(paths)
    if not paths.metrics_token_file.exists():
        raise StateError(f"no metrics token in {paths.root}",
                         hint="restart the control plane once (`tulle down && tulle up`); "
                              "it creates metrics-token")
    workloads = ApiClient.from_state(paths).get("/v1/workloads")
    directory = (output_dir or paths.root / "prometheus").expanduser().absolute()
    targets = directory / TARGETS_FILE
    groups = target_groups(workloads)
    write_targets(targets, groups)
    sys.stdout.write(render_config(scrape_config(
        f"{endpoint.host}:{endpoint.api_port}", paths.metrics_token_file, targets),
        paths.root, targets))
    print(f"wrote {len(groups)} sidecar target{'s' if len(groups) != 1 else ''} to {targets}",
          file=sys.stderr)


@prometheus.command()
def rules(
    ctx: typer.Context,
    namespace: Annotated[str | None, typer.Option(
        "-n", "--namespace", help="Only this namespace's SLOs (default: all)")] = None,
) -> None:
    """Print recording and burn-rate alert rules for every ServiceLevelObjective.

    Load the output as a rule file (`rule_files:` in prometheus.yml); check it with
    `promtool check rules`. docs/slo.md explains each rule.
    """
    paths: StatePaths = ctx.obj.paths
    stored = ApiClient.from_state(paths).get("/v1/resources/servicelevelobjective",
                                             {"namespace": namespace})
    resources = [resource_from_manifest(item["manifest"]) for item in stored]
    slos = mesh_slos((r.key, r.spec) for r in resources)
    header = ("# Prometheus rules for the tulle mesh's ServiceLevelObjectives.\n"
              "# Made by `tulle prometheus rules`; run it again after changing an SLO.\n")
    sys.stdout.write(header + yaml.safe_dump(rule_file(slos), sort_keys=False,
                                             default_flow_style=False, width=100))
    print(f"{len(slos)} SLO{'s' if len(slos) != 1 else ''}"
          + ("" if slos else ": apply a ServiceLevelObjective (docs/slo.md)"), file=sys.stderr)


def target_groups(workloads: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """file_sd target groups: one per workload, its agent's address, labelled like its
    metrics (so ``honor_labels`` keeps one copy of each label)."""
    groups = [{"targets": [f"{w['address']}:{w['agentPort']}"],
               "labels": {"namespace": str(w["namespace"]), "workload": str(w["name"]),
                          "service": str(w["service"])}}
              for w in workloads]
    return sorted(groups, key=lambda g: (g["labels"]["namespace"], g["labels"]["workload"]))


def scrape_config(controlplane: str, credentials_file: Path, targets_file: Path
                  ) -> dict[str, Any]:
    authorization = {"type": "Bearer", "credentials_file": str(credentials_file)}
    return {"scrape_configs": [
        {"job_name": CONTROLPLANE_JOB, "metrics_path": METRICS_PATH,
         "authorization": authorization,
         "static_configs": [{"targets": [controlplane]}]},
        # A sidecar's metrics carry namespace, workload and service themselves; the target
        # labels are the same values, for discovery and relabelling. honor_labels avoids
        # exported_* duplicates.
        {"job_name": SIDECARS_JOB, "metrics_path": METRICS_PATH, "honor_labels": True,
         "authorization": authorization,
         "file_sd_configs": [{"files": [str(targets_file)]}]},
    ]}


def render_config(config: Mapping[str, Any], state_dir: Path, targets_file: Path) -> str:
    header = (f"# Prometheus scrape config for the tulle mesh in {state_dir}.\n"
              f"# Made by `tulle prometheus config`; run it again to refresh the sidecar\n"
              f"# targets in {targets_file}.\n")
    return header + yaml.safe_dump(dict(config), sort_keys=False, default_flow_style=False)


def write_targets(path: Path, groups: list[dict[str, Any]]) -> None:
    """Replace the file atomically: Prometheus watches it and must never read half of it.
    Readable by all (0644): it lists addresses, no secrets, and Prometheus may run as
    another user."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(json.dumps(groups, indent=2) + "\n")
            Path(tmp).chmod(0o644)
            Path(tmp).replace(path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise StateError(f"cannot write the targets file {path}: {exc.strerror or exc}",
                         hint="choose a writable directory with --output-dir") from exc
