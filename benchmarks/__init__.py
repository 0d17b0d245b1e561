"""vpkl's benchmarks: ``python -m vpkl.benchmarks [--quick] [--out DIR]`` (see README, Benchmarks)."""
