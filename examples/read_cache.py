"""Read a kdcache cache in a DataLoader and distill a student from it.

CacheDataset pairs cache row r with sample `row` of your dataset (the example id stored in the cache),
BlockShuffleSampler reads the cache block by block in the order `kdcache train` uses (and splits it
across ranks under torch.distributed), and collate returns tensors. The loss is the distillation loss
over the teacher's cached top-K plus its tail mass at T = 2: no teacher forward, no softmax over C for
the teacher.

    python examples/read_cache.py [CACHE]          # default: the cache examples/write_cache.py writes
"""

import os
import sys

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

import kdcache
import kdcache.torch as kt

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from write_cache import CLASSES, DIM, EXAMPLES, Features  # noqa: E402


def distill_loss(student_logits, ids, teacher_logp, log_tail, T):
    """KL(teacher || student) at temperature T over the teacher's top-K classes and its tail (the tail's
    student mass is the student's mass outside those K classes)."""
    s = F.log_softmax(student_logits / T, dim=1)
    s_top = s.gather(1, ids)
    s_tail = torch.log1p(-s_top.exp().sum(1).clamp(max=1 - 1e-6))
    p_top = teacher_logp.exp()
    kl = (p_top * (teacher_logp - s_top)).sum(1) + log_tail.exp() * (log_tail - s_tail)
    return (T * T) * kl.mean()


def main(path: str = "runs/example/cache", epochs: int = 2, workers: int = 2):
    if not os.path.exists(os.path.join(path, "_manifest.json")):
        from write_cache import main as write

        write(path)
    cache = kdcache.Cache(path)
    data = kt.CacheDataset(cache, Features(EXAMPLES), temperature=2)
    sampler = kt.BlockShuffleSampler(cache, seed=0, batch_size=256)  # batches of positions, train's order
    loader = DataLoader(data, batch_sampler=sampler, num_workers=workers, collate_fn=kt.collate)
    torch.manual_seed(0)
    student = nn.Sequential(nn.Linear(DIM, 128), nn.ReLU(), nn.Linear(128, CLASSES))
    opt = torch.optim.Adam(student.parameters(), lr=3e-3)
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        total, n = 0.0, 0
        for b in loader:
            _, x, _ = b["input"]  # the dataset's (index, features, label), matched by the stored row id
            loss = distill_loss(student(x), b["ids"], b["logp"], b["log_tail"], T=2.0)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total, n = total + loss.item() * len(x), n + len(x)
        print(f"epoch {epoch}: distillation loss {total / n:.4f} over {n} rows")
    return total / n


if __name__ == "__main__":
    main(*sys.argv[1:2])
