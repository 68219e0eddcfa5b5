"""`kdcache.torch`: CacheDataset pairs each cache row with the dataset sample of its stored row id, the
same batches come out of a DataLoader with and without workers (fork and spawn), and BlockShuffleSampler
gives `Cache.order`'s block-contiguous, seeded order, split into contiguous shares for data parallelism."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

import kdcache
import kdcache.torch as kt
from conftest import TEMPS, distinct_logits, random_labels

N, C, K = 410, 97, 6
BLOCK_ROWS, SHARD_ROWS = 50, 150  # shards of 150, 150, 110 rows: 9 blocks, the last of 10 rows
EXAMPLES = 3 * N + 1


def example_of(i: int) -> torch.Tensor:
    return torch.tensor([float(i), float(i) ** 0.5, float(i % 7)])


class Examples(Dataset):
    """Sample i is a tensor made from i (defined at module level: spawned workers unpickle it)."""

    def __len__(self):
        return EXAMPLES

    def __getitem__(self, i):
        return example_of(i)


def row_of(i):
    """The cache's i-th row is written for example 3i + 1: pairing rows with samples by position fails."""
    return 3 * i + 1


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    out = tmp_path_factory.mktemp("torch") / "c"
    z, y = distinct_logits(N, C, seed=61), random_labels(EXAMPLES, C, seed=62)
    rows = row_of(np.arange(N))
    with kdcache.CacheWriter(out, num_classes=C, top_k=K, temperatures=TEMPS, teacher="teacher@3", dataset="dataset@3",
                             block_rows=BLOCK_ROWS, shard_rows=SHARD_ROWS, num_examples=EXAMPLES) as w:
        for lo in range(0, N, 64):
            w.add_logits(rows[lo:lo + 64], z[lo:lo + 64], y[rows[lo:lo + 64]])
    c = kdcache.Cache(out)
    assert c.num_rows == N and c.num_blocks == 9
    np.testing.assert_array_equal(c.rows(range(N)).row, rows)
    return c


def batches(loader):
    return [b for b in loader]


def assert_same_batches(a, b, what):
    assert len(a) == len(b), f"{what}: {len(a)} vs {len(b)} batches"
    for i, (x, y) in enumerate(zip(a, b)):
        assert sorted(x) == sorted(y), f"{what}, batch {i}: fields {sorted(x)} vs {sorted(y)}"
        for k in x:
            assert x[k].dtype == y[k].dtype and torch.equal(x[k], y[k]), f"{what}, batch {i}: {k} differs"


def loader(cache, **kw):
    ds = kt.CacheDataset(cache, Examples(), temperature=2, logits=True)
    return DataLoader(ds, batch_size=32, sampler=kt.BlockShuffleSampler(cache, seed=3), collate_fn=kt.collate, **kw)


def test_batches_pair_rows_with_their_samples(cache):
    got = batches(loader(cache))
    order = cache.order(3)
    assert len(got) == -(-N // 32)
    seen = 0
    for b in got:
        n = len(b["row"])
        pos = order[seen:seen + n]
        seen += n
        want = cache.rows(pos, temperature=2, logits=True)
        assert b["row"].dtype == torch.int64 and b["ids"].dtype == torch.int64 and b["label"].dtype == torch.int64
        assert b["logp"].dtype == b["lse"].dtype == b["log_tail"].dtype == b["logits"].dtype == torch.float32
        assert b["ids"].shape == b["logp"].shape == (n, K) and b["lse"].shape == (n,) and b["input"].shape == (n, 3)
        np.testing.assert_array_equal(b["row"].numpy(), want.row.astype(np.int64))
        np.testing.assert_array_equal(b["row"].numpy(), row_of(pos.astype(np.int64)))
        for k in ("label", "ids", "logp", "lse", "log_tail", "logits"):
            np.testing.assert_array_equal(b[k].numpy(), getattr(want, k), err_msg=k)
        # each sample is the dataset's sample of the row's stored id
        assert torch.equal(b["input"], torch.stack([example_of(int(r)) for r in b["row"]]))
    assert seen == N


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_workers_give_the_same_batches(cache, context):
    want = batches(loader(cache, num_workers=0))
    got = batches(loader(cache, num_workers=2, multiprocessing_context=context))
    assert_same_batches(want, got, f"num_workers=2, {context}")


def test_default_collate(cache):
    ds = kt.CacheDataset(cache, Examples(), temperature=4)
    sampler = kt.BlockShuffleSampler(cache, seed=5)
    plain = batches(DataLoader(ds, batch_size=32, sampler=sampler))
    ours = batches(DataLoader(ds, batch_size=32, sampler=sampler, collate_fn=kt.collate))
    assert len(plain) == len(ours)
    for a, b in zip(plain, ours):
        for k in ("row", "label", "ids", "logp", "lse", "log_tail", "input"):
            assert torch.equal(a[k].to(b[k].dtype), b[k]), k
    # no __getitems__: torch fetches rows one by one through __getitem__
    one = batches(DataLoader(RowByRow(ds), batch_size=32, sampler=sampler))
    for a, b in zip(one, ours):
        for k in ("row", "label", "ids", "logp", "lse", "log_tail", "input"):
            assert torch.equal(a[k].to(b[k].dtype), b[k]), k


class RowByRow(Dataset):
    def __init__(self, ds):
        self.ds = ds

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        return self.ds[i]


def test_getitem(cache):
    ds = kt.CacheDataset(cache.path, Examples(), temperature=2)
    assert len(ds) == N
    r = cache.rows([7], temperature=2)
    item = ds[7]
    assert int(item["row"]) == row_of(7) and torch.equal(item["input"], example_of(row_of(7)))
    np.testing.assert_array_equal(item["ids"].numpy(), r.ids[0])
    np.testing.assert_array_equal(item["logp"].numpy(), r.logp[0])
    assert float(item["lse"]) == float(r.lse[0]) and float(item["log_tail"]) == float(r.log_tail[0])
    assert int(ds[-1]["row"]) == row_of(N - 1) and int(ds[np.int64(3)]["row"]) == row_of(3)
    with pytest.raises(IndexError):
        ds[N]
    with pytest.raises(IndexError):
        ds[-N - 1]
    with pytest.raises(TypeError):
        ds["7"]
    alone = kt.CacheDataset(cache)[0]  # no dataset: the cache rows alone
    assert "input" not in alone and int(alone["row"]) == row_of(0)
    with pytest.raises(ValueError, match="not cached"):
        kt.CacheDataset(cache, Examples(), temperature=3)
    with pytest.raises(ValueError):
        kt.CacheDataset(cache, [0] * 10)  # fewer samples than the cache was written for


def test_dataset_getitems_is_used(cache):
    calls = []

    class Batched(Examples):
        def __getitems__(self, ids):
            calls.append(list(ids))
            return [example_of(i) for i in ids]

    ds = kt.CacheDataset(cache, Batched())
    b = kt.collate(ds.__getitems__([4, 0, 4]))
    assert calls == [[row_of(4), row_of(0), row_of(4)]]
    assert b["row"].tolist() == [row_of(4), row_of(0), row_of(4)]
    assert torch.equal(b["input"], torch.stack([example_of(row_of(i)) for i in (4, 0, 4)]))


# ---------------------------------------------------------------------------------------------------
# the sampler


def blocks_of(cache, positions):
    return np.searchsorted(cache.block_starts, positions, side="right") - 1


def assert_block_contiguous_permutation(cache, order):
    assert order.dtype == np.uint64
    n = cache.num_rows
    np.testing.assert_array_equal(np.sort(order), np.arange(n))
    b = blocks_of(cache, order.astype(np.int64))
    runs = b[np.r_[True, b[1:] != b[:-1]]]
    assert len(runs) == cache.num_blocks and len(set(runs.tolist())) == cache.num_blocks, f"blocks are split: {runs.tolist()}"


def test_order_is_block_contiguous_and_seeded(cache):
    np.testing.assert_array_equal(cache.order(), np.arange(N))
    orders = {s: cache.order(s) for s in (0, 1, 3, 2**40)}
    for s, o in orders.items():
        assert_block_contiguous_permutation(cache, o)
        np.testing.assert_array_equal(o, cache.order(s))  # deterministic
    keys = {tuple(o.tolist()) for o in orders.values()}
    assert len(keys) == len(orders), "different seeds gave the same order"
    o = orders[3]
    assert not np.array_equal(o, np.arange(N))
    # rows are shuffled within their blocks, and blocks are visited out of storage order for some seed
    b = blocks_of(cache, o.astype(np.int64))
    first = o[b == b[0]]
    assert not np.array_equal(first, np.sort(first))
    assert any(not np.all(np.diff(blocks_of(cache, x.astype(np.int64))) >= 0) for x in orders.values())


def test_sampler_epochs(cache):
    s = kt.BlockShuffleSampler(cache, seed=3)
    assert (s.rank, s.world_size, len(s)) == (0, 1, N)
    e0 = list(s)
    assert e0 == cache.order(3).tolist()
    s.set_epoch(1)
    e1 = list(s)
    assert e1 == cache.order(4).tolist() and e1 != e0
    s.set_epoch(0)
    assert list(s) == e0
    assert list(kt.BlockShuffleSampler(cache, seed=3)) == e0
    assert list(kt.BlockShuffleSampler(cache, shuffle=False)) == list(range(N))


@pytest.mark.parametrize("drop_last", [False, True])
def test_sampler_ranks_partition_the_epoch(cache, drop_last):
    world = 3
    samplers = [kt.BlockShuffleSampler(cache, seed=3, rank=r, world_size=world, drop_last=drop_last) for r in range(world)]
    for s in samplers:
        s.set_epoch(2)
    shares = [list(s) for s in samplers]
    order = cache.order(5).tolist()
    per = N // world if drop_last else -(-N // world)
    assert all(len(x) == len(s) == per for x, s in zip(shares, samplers))
    joined = sum(shares, [])
    if drop_last:
        assert joined == order[: per * world]
    else:
        assert joined == (order + order)[: per * world]  # padded with the epoch's first rows
        assert set(joined) == set(range(N))
    for r, x in enumerate(shares):  # each rank's share is a contiguous run of the order
        assert x == joined[r * per:(r + 1) * per]


def test_sampler_arguments(cache):
    with pytest.raises(ValueError):
        kt.BlockShuffleSampler(cache, rank=3, world_size=3)
    with pytest.raises(ValueError):
        kt.BlockShuffleSampler(cache, world_size=0)
    with pytest.raises(ValueError):
        kt.BlockShuffleSampler(cache, seed=-1)
