"""`tulle analyze`: analyzers over resources, in the CLI (files) and the control plane (live,
and at apply time, where the messages an apply introduces are its warnings: ``run.py``).

Each analyzer is a record (``analyzers/__init__.py``) that declares the resource kinds it
reads and whether it needs the registry's workloads or telemetry; the engine (``engine.py``)
runs those whose inputs are available. Every message has a stable code from ``codes.py``.
"""
