"""The control plane: store, registry, xDS server and HTTP API in one asyncio process."""
