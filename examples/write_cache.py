"""Write a kdcache cache from a PyTorch teacher loop.

The teacher is an ordinary nn.Module (here a small MLP whose forward returns a dict, so it cannot be
traced or scripted as it is); the data is an ordinary torch Dataset read by a DataLoader. Each batch's
example indices are passed with its logits, so every cache row is keyed by the example it belongs to.

    python examples/write_cache.py [OUT]          # default OUT: runs/example/cache

Run it twice: the second run finds the complete cache and does nothing. Kill it midway and run it again:
it keeps the finished shards and starts its teacher loop after them (writer.next_row).
"""

import sys

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

import kdcache

CLASSES, DIM, EXAMPLES = 1000, 32, 4096


class Features(Dataset):
    """A deterministic stand-in for real inputs: sample i is (i, features of i, label of i)."""

    def __init__(self, n: int):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, DIM, generator=g)
        self.y = torch.randint(0, CLASSES, (n,), generator=g)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return i, self.x[i], self.y[i]


class Teacher(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(DIM, 256), nn.GELU(), nn.Linear(256, CLASSES))

    def forward(self, x):
        return {"logits": self.body(x) * 4.0, "features": x}


def main(out: str = "runs/example/cache") -> kdcache.Cache:
    torch.manual_seed(0)
    teacher = Teacher().eval()
    data = Features(EXAMPLES)
    with kdcache.CacheWriter(
        out,
        num_classes=CLASSES,
        top_k=32,
        temperatures=(1, 2, 4),
        teacher="example-teacher@seed0",  # any id that changes when the teacher does (a checkpoint hash)
        dataset=f"example-features@seed0;n={EXAMPLES}",
        num_examples=len(data),
        block_rows=512,
        shard_rows=1024,
    ) as w:
        if w.complete:
            print(f"{out}: already complete, nothing to do")
        else:
            start = w.next_row or 0  # after a crash: the first example not yet written
            if start:
                print(f"{out}: resuming at example {start} ({w.resumed_rows} rows kept)")
            loader = DataLoader(Subset(data, range(start, len(data))), batch_size=256, shuffle=False)
            with torch.no_grad():
                for idx, x, y in loader:
                    w.add_logits(idx, teacher(x)["logits"], labels=y)
    cache = kdcache.Cache(out)
    print(cache)
    return cache


if __name__ == "__main__":
    main(*sys.argv[1:2])
