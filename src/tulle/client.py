"""A small synchronous client for the control-plane API (stdlib only: the CLI starts fast)."""

from __future__ import annotations

import http.client
import json
import urllib.parse
from collections.abc import Iterator, Mapping
from typing import Any

from tulle.errors import ApiError, ControlPlaneUnavailable, error_from_dict
from tulle.settings import ControlPlaneEndpoint, StatePaths, read_token


class ApiClient:
    def __init__(self, host: str, port: int, token: str, *, timeout: float = 30.0) -> None:
        self.host = host
        self.port = port
        self.token = token
        self.timeout = timeout

    @classmethod
    def from_state(cls, paths: StatePaths, *, timeout: float = 30.0) -> ApiClient:
        endpoint = ControlPlaneEndpoint.load(paths)
        return cls(endpoint.host, endpoint.api_port, read_token(paths), timeout=timeout)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def get(self, path: str, query: Mapping[str, Any] | None = None,
            timeout: float | None = None) -> Any:
        return self.request("GET", path, query=query, timeout=timeout)

    def post(self, path: str, body: Any = None, timeout: float | None = None) -> Any:
        return self.request("POST", path, body=body, timeout=timeout)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    def request(self, method: str, path: str, *, body: Any = None,
                query: Mapping[str, Any] | None = None, timeout: float | None = None) -> Any:
        status, payload = self.raw(method, path, body=body, query=query, timeout=timeout)
        try:
            data = json.loads(payload) if payload else None
        except ValueError as exc:
            raise ApiError(f"the control plane sent a response that is not JSON "
                           f"(HTTP {status})") from exc
        if status >= 400:
            if isinstance(data, dict) and isinstance(data.get("error"), dict):
                raise error_from_dict(data["error"])
            raise ApiError(f"the control plane answered HTTP {status}")
        return data

    def stream(self, path: str, query: Mapping[str, Any] | None = None,
               idle_timeout: float = 30.0) -> Iterator[dict[str, Any]]:
        """A GET whose answer is NDJSON, one object per line as the lines arrive.
        ``idle_timeout``: how long a line may take (the server sends heartbeats)."""
        if query:
            clean = {k: v for k, v in query.items() if v is not None}
            path += "?" + urllib.parse.urlencode(clean)
        connection = http.client.HTTPConnection(self.host, self.port, timeout=idle_timeout)
        try:
            try:
                connection.request("GET", path, headers={"Authorization": f"Bearer {self.token}"})
                response = connection.getresponse()
            except OSError as exc:
                raise ControlPlaneUnavailable(
                    f"the control plane at {self.url} is not running",
                    hint="start it with `tulle up`") from exc
            if response.status >= 400:
                payload = response.read()
                try:
                    data = json.loads(payload)
                except ValueError:
                    data = None
                if isinstance(data, dict) and isinstance(data.get("error"), dict):
                    raise error_from_dict(data["error"])
                raise ApiError(f"the control plane answered HTTP {response.status}")
            while True:
                try:
                    line = response.readline()
                except OSError as exc:
                    raise ControlPlaneUnavailable(
                        f"lost the stream from the control plane at {self.url}: {exc}",
                        hint="check that it still runs: `tulle status`") from exc
                if not line:
                    return
                if line.strip():
                    yield json.loads(line)
        finally:
            connection.close()

    def raw(self, method: str, path: str, *, body: Any = None,
            query: Mapping[str, Any] | None = None, timeout: float | None = None
            ) -> tuple[int, bytes]:
        if query:
            clean = {k: v for k, v in query.items() if v is not None}
            path += "?" + urllib.parse.urlencode(clean)
        headers = {"Authorization": f"Bearer {self.token}"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        connection = http.client.HTTPConnection(self.host, self.port,
                                                timeout=timeout or self.timeout)
        try:
            connection.request(method, path, body=data, headers=headers)
            response = connection.getresponse()
            return response.status, response.read()
        except OSError as exc:
            if isinstance(exc, TimeoutError):
                raise ControlPlaneUnavailable(
                    f"the control plane at {self.url} did not answer in time",
                    hint="check its log (controlplane.log in the state directory)") from exc
            raise ControlPlaneUnavailable(
                f"the control plane at {self.url} is not running",
                hint="start it with `tulle up`") from exc
        finally:
            connection.close()
