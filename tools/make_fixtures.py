#!/usr/bin/env python3
"""Writes the TorchScript fixtures the tests use (needs a Python with a full torch 2.11 install; the CPU-only .venv cannot import torch).

  tests/fixtures/teacher.pt       a traced MLP teacher: features [B, 8] -> logits [B, 30]
  tests/fixtures/teacher_x.npy    16 input rows, float32
  tests/fixtures/teacher_z.npy    the teacher's logits for them, float32 (what kdcache must reproduce)
  tests/fixtures/backbone.pt      a trainable student backbone: [B, 8] -> features [B, 16]
  tests/fixtures/backbone_bn.pt   the same with BatchNorm and dropout: buffers and RNG a checkpoint must carry
  tests/fixtures/teacher_tuple.pt teacher.pt's MLP returning (logits, inputs), as models that also return hidden states do

This is also the recipe for exporting your own teacher: trace it with an example batch and save.
"""
import os
import numpy as np
import torch

out = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures")
os.makedirs(out, exist_ok=True)
torch.manual_seed(0)
teacher = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 30)).eval()
x = torch.randn(16, 8)
traced = torch.jit.trace(teacher, x)
traced.save(os.path.join(out, "teacher.pt"))
np.save(os.path.join(out, "teacher_x.npy"), x.numpy().astype(np.float32))
with torch.no_grad():
    np.save(os.path.join(out, "teacher_z.npy"), teacher(x).numpy().astype(np.float32))
backbone = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU())
torch.jit.trace(backbone, x).save(os.path.join(out, "backbone.pt"))
torch.manual_seed(1)
bn = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.BatchNorm1d(16), torch.nn.ReLU(), torch.nn.Dropout(0.1)).train()
torch.jit.script(bn).save(os.path.join(out, "backbone_bn.pt"))


class Pair(torch.nn.Module):
    def __init__(self, body):
        super().__init__()
        self.body = body

    def forward(self, x):
        return self.body(x), x


torch.jit.trace(Pair(teacher), x).save(os.path.join(out, "teacher_tuple.pt"))
print("fixtures written to", os.path.abspath(out))
