"""Tap: a live stream of individual requests, from sidecars to the control plane to the CLI."""
