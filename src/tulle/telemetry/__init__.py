"""Telemetry: what sidecars measure, how it is collected, and the windows it is kept in."""
