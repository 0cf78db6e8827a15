"""Proxy log levels and logs, through each workload's agent."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from tulle.controlplane.app import ControlPlane


def register(router: web.UrlDispatcher, cp: ControlPlane) -> None:
    """Not built yet."""
