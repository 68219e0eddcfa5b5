"""kdcache from Python: write a teacher's ranked logits into a kdcache cache, read them back as NumPy
arrays or torch tensors.

    import kdcache
    with kdcache.CacheWriter("cache/train", num_classes=C, top_k=64, temperatures=(1, 2, 4),
                             teacher="resnet152@v3", dataset="imagenet-train@2024") as w:
        for rows, x in loader:                       # rows: the examples' indices in the dataset
            w.add_logits(rows, teacher(x))           # a torch tensor on any device, or NumPy

    cache = kdcache.Cache("cache/train")
    r = cache.rows([5, 0, 17], temperature=2)        # r.ids [3, K], r.logp [3, K], r.log_tail, r.lse

The cache is the same one the `kdcache` command-line tool writes and reads (`kdcache verify`, `dump`,
`train`, `merge`). PyTorch glue (a Dataset, a block-aware sampler, collate): `kdcache.torch`.
"""

from ._kdcache import (
    CacheVersionError,
    CorruptCacheError,
    KdcacheError,
    SignatureError,
    core_version,
    merge,
    part_range,
)
from .cache import DEFAULT_BLOCK_CACHE_BYTES, Cache, CacheWriter, Rows, rank_logits

__version__ = "0.1.0"

__all__ = [
    "Cache",
    "CacheWriter",
    "Rows",
    "rank_logits",
    "part_range",
    "merge",
    "core_version",
    "KdcacheError",
    "CorruptCacheError",
    "CacheVersionError",
    "SignatureError",
    "DEFAULT_BLOCK_CACHE_BYTES",
]
