"""The teacher's probabilities at any cached temperature, and what they add up to.

A cache stores, per row and cached temperature T, the exact log-normaliser over all C classes and the
exact log mass outside the top-K, so the top-K probabilities at T are exact (to the stored dtype's
rounding) and, with the tail mass, sum to 1. Other temperatures are refused: their normaliser is not
in the cache.

    python examples/probabilities.py [CACHE]       # default: the cache examples/write_cache.py writes
"""

import os
import sys

import numpy as np

import kdcache

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main(path: str = "runs/example/cache"):
    if not os.path.exists(os.path.join(path, "_manifest.json")):
        from write_cache import main as write

        write(path)
    cache = kdcache.Cache(path)
    print(cache)
    rows = [0, 1, cache.num_rows - 1]
    for t in cache.temperatures:
        r = cache.rows(rows, temperature=t, logits=True)
        total = r.p.sum(1) + r.tail_mass
        # the same probabilities from the logits and the stored normaliser: p = exp(z / T - lse)
        again = np.exp(r.logits.astype(np.float64) / t - r.lse[:, None])
        print(f"T = {t:g}: p(top-1) = {np.round(r.p[:, 0], 4)}, tail mass = {np.round(r.tail_mass, 4)}, "
              f"top-K + tail = {np.round(total, 5)}, max |p - exp(z/T - lse)| = {np.abs(again - r.p).max():.1e}")
        assert np.allclose(total, 1.0, atol=2e-3), total
    try:
        cache.rows(rows, temperature=3)
    except ValueError as e:
        print(f"T = 3: {e}")
    return cache


if __name__ == "__main__":
    main(*sys.argv[1:2])
