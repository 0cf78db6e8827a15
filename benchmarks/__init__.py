"""tulle's benchmarks: `python -m benchmarks [--quick]`. Each prints its figures and their ratio
to a baseline measured in the same run, so results compare across noisy, shared machines."""
