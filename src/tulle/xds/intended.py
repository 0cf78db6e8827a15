"""A proxy's compiled config as JSON: what the control plane intends it to have.

Resources are kept only in their encoded form, so they are decoded back here, on demand, for
`tulle proxy-config --diff`. Secrets (a tap logger's access-log token) are redacted by the same
rules as the agent applies to Envoy's config_dump, so both sides of the diff still compare.
"""

from __future__ import annotations

from typing import Any

from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import json_format

from tulle.security import redact
from tulle.xds.config import ProxyConfig
from tulle.xds.types import PUSH_ORDER, short_name
from tulle.xds.wire import EncodedResource, sotw_body


def resource_json(resource: EncodedResource) -> dict[str, Any]:
    """One resource as Envoy's JSON (proto field names, as in config_dump)."""
    response = discovery_pb2.DiscoveryResponse.FromString(
        sotw_body(resource.type_url, "", [resource]))
    as_dict: dict[str, Any] = json_format.MessageToDict(
        response.resources[0], preserving_proto_field_name=True)
    as_dict.pop("@type", None)
    return as_dict


def intended_json(config: ProxyConfig) -> dict[str, Any]:
    """{"meshVersion", "resources": {"CDS": {name: resource}, ...}, "versions": {...}}."""
    return {
        "meshVersion": config.mesh_version,
        "versions": {short_name(t): v for t, v in config.versions.items()},
        "resources": {short_name(t): {name: redact(resource_json(r))
                                      for name, r in sorted(config.of_type(t).items())}
                      for t in PUSH_ORDER},
    }
