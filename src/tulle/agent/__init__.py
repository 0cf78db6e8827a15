"""The per-workload agent. It imports only the standard library and small tulle modules: it runs
beside every workload, so its memory counts."""
