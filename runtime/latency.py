"""Latency statistics in bounded memory: count, total and max exactly, percentiles from a uniform sample."""
from __future__ import annotations

import numpy as np


class LatencyStats:
    """Collects per-chunk compute latencies (ms) of a stream of any length.

    Keeps at most ``keep`` values, a uniform random sample of all seen (reservoir sampling,
    Vitter's algorithm R), so percentiles are exact up to ``keep`` values and estimates after.
    """

    def __init__(self, keep: int = 20000, seed: int = 0):
        self.keep = keep
        self._rng = np.random.default_rng(seed)
        self._sample = np.zeros(keep)
        self.count = 0
        self.total_ms = 0.0
        self.max_ms = 0.0

    def add(self, ms: float) -> None:
        """Record one latency in milliseconds."""
        if self.count < self.keep:
            self._sample[self.count] = ms
        else:
            j = int(self._rng.integers(0, self.count + 1))
            if j < self.keep:
                self._sample[j] = ms
        self.count += 1
        self.total_ms += ms
        self.max_ms = max(self.max_ms, ms)

    def percentile(self, p: float) -> float:
        """The ``p``-th percentile (0-100) in ms; NaN when nothing was recorded."""
        n = min(self.count, self.keep)
        return float(np.percentile(self._sample[:n], p)) if n else float("nan")

    def summary(self) -> dict:
        """{"count", "total_ms", "p50_ms", "p95_ms", "p99_ms", "max_ms"}."""
        return {"count": self.count, "total_ms": self.total_ms, "p50_ms": self.percentile(50),
                "p95_ms": self.percentile(95), "p99_ms": self.percentile(99), "max_ms": self.max_ms}
