"""The workload registry: registrations, readiness and liveness."""
