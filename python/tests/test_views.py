"""Augmented views in Python: the rows of a `kdcache cache --views V --augment SPEC` cache carry `view`
and `aug`, and `kdcache.torch.replay(image, aug)` re-applies a row's transform. Checked against torch's
own crop + `F.interpolate(mode="bilinear", align_corners=False)` + flip (an independent reference), and
against what the teacher saw: with the identity teacher (an image's pixels are its logits) the cached
row's logits are the replayed view's pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import kdcache.torch as kt

N, CH, H, W, V = 10, 2, 6, 7, 3
SPEC = "scale=0.2:0.9,ratio=0.5:2,flip=0.5"


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    d = tmp_path_factory.mktemp("views")
    x = np.random.default_rng(3).standard_normal((N, CH, H, W)).astype(np.float32) * 2
    np.save(d / "x.npy", x)
    return d, x


@pytest.fixture(scope="module")
def cache(cli, images):
    d, _ = images
    out = d / "cache"
    cli.run("cache", "--quiet", "--teacher", "identity", "--data", d / "x.npy", "--out", out, "--views", V, "--augment", SPEC, "--top-k", CH * H * W, "--dtype", "f32", "--temperatures", "1", "--seed", 5)
    return out


def reference(x: torch.Tensor, aug) -> torch.Tensor:
    """torch's crop, bilinear resize back to [H, W] (half-pixel centres, no antialias) and flip."""
    t, l, h, w, flip = (float(v) for v in aug)
    t, l, h, w = int(t), int(l), int(h), int(w)
    crop = x[..., t : t + h, l : l + w].unsqueeze(0)
    out = F.interpolate(crop, size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False, antialias=False)[0]
    return out.flip(-1) if flip else out


def test_rows_carry_view_and_aug(kd, cache):
    c = kd.Cache(cache)
    assert c.num_rows == N * V
    m = c.manifest
    assert (m["examples"], m["views"], m["aug_dim"]) == (N, V, 5)
    assert "views=3;seed=5" in m["signature"]["augmentation"]
    r = c.rows(np.arange(N * V))
    assert r.row.tolist() == [i // V for i in range(N * V)]
    assert r.view.tolist() == [i % V for i in range(N * V)]
    a = np.asarray(r.aug)
    assert a.shape == (N * V, 5) and a.dtype == np.float32
    top, left, h, w, flip = a.T
    assert np.all(a == np.round(a)), "crop boxes are whole pixels"
    assert np.all((top >= 0) & (left >= 0) & (h >= 1) & (w >= 1) & (top + h <= H) & (left + w <= W))
    assert set(flip.tolist()) == {0.0, 1.0}, "flips both occur"
    area = h * w / (H * W)
    assert np.all(area <= 0.9 + 1e-6), area.max()
    # the views of an example differ from each other
    assert len({tuple(v) for v in a[:V].tolist()}) == V


def test_replay_is_what_the_teacher_saw(kd, cache, images):
    _, x = images
    c = kd.Cache(cache)
    r = c.rows(np.arange(N * V))
    ids, logp, lse = np.asarray(r.ids), np.asarray(r.logp), np.asarray(r.lse).reshape(-1)
    for j in range(N * V):
        view = kt.replay(torch.from_numpy(x[r.row[j]]), r.aug[j])
        assert view.shape == (CH, H, W) and view.dtype == torch.float32
        flat = view.reshape(-1).numpy()
        # identity teacher, K = C at T = 1: the cached logits z = log p + lse are the view's pixels
        z = np.empty(CH * H * W, dtype=np.float64)
        z[ids[j]] = logp[j].astype(np.float64) + lse[j]
        np.testing.assert_allclose(z, flat, rtol=0, atol=1e-4 * (1 + np.abs(flat).max()))
        assert ids[j][0] == int(np.argmax(flat))


def test_replay_matches_torch_interpolate(images):
    _, x = images
    rng = np.random.default_rng(0)
    xt = torch.from_numpy(x)
    for _ in range(40):
        h, w = int(rng.integers(1, H + 1)), int(rng.integers(1, W + 1))
        t, l = int(rng.integers(0, H - h + 1)), int(rng.integers(0, W - w + 1))
        aug = [t, l, h, w, float(rng.integers(0, 2))]
        i = int(rng.integers(0, N))
        got = kt.replay(xt[i], aug)
        want = reference(xt[i], aug)
        torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


def test_replay_batches_and_shapes(images):
    _, x = images
    xt = torch.from_numpy(x)
    augs = torch.tensor([[0, 0, H, W, 0], [1, 2, 3, 4, 1], [0, 1, 5, 5, 0]], dtype=torch.float32)
    batch = kt.replay(xt[:3], augs)
    assert batch.shape == (3, CH, H, W)
    for i in range(3):
        assert torch.equal(batch[i], kt.replay(xt[i], augs[i]))
    # the whole image unflipped is the image itself; flipped, its mirror
    assert torch.equal(batch[0], xt[0])
    assert torch.equal(kt.replay(xt[0], [0, 0, H, W, 1]), xt[0].flip(-1))
    # [H, W] images, uint8 pixels taken as unscaled floats, non-contiguous input
    g = kt.replay(xt[0, 0], [1, 2, 3, 4, 1])
    assert g.shape == (H, W) and torch.equal(g, kt.replay(xt[0:1, 0:1], augs[1:2])[0, 0])
    u8 = torch.arange(H * W, dtype=torch.uint8).reshape(1, H, W)
    torch.testing.assert_close(kt.replay(u8, [1, 1, 4, 4, 0]), reference(u8.float(), [1, 1, 4, 4, 0]), rtol=0, atol=1e-4)
    nc = xt.transpose(-1, -2).contiguous().transpose(-1, -2)
    assert not nc.is_contiguous()
    assert torch.equal(kt.replay(nc[:3], augs), batch)


@pytest.mark.parametrize(
    "image, aug, exc, fragment",
    [
        (np.zeros((H, W), np.float32), [0, 0, 2, 2, 0], TypeError, "torch.Tensor"),
        (torch.zeros(H, W, dtype=torch.bool), [0, 0, 2, 2, 0], TypeError, "real numbers"),
        (torch.zeros(W), [0, 0, 2, 2, 0], ValueError, "[H, W], [C, H, W] or [B, C, H, W]"),
        (torch.zeros(CH, H, W), [0, 0, 2, 2], ValueError, "aug must be [5]"),
        (torch.zeros(2, CH, H, W), [0, 0, 2, 2, 0], ValueError, "aug must be [B, 5]"),
        (torch.zeros(2, CH, H, W), [[0, 0, 2, 2, 0]], ValueError, "aug must be [2, 5]"),
        (torch.zeros(CH, H, W), [0, 0, H + 1, 2, 0], ValueError, "image 0"),
        (torch.zeros(CH, H, W), [0, 0, 0, 2, 0], ValueError, "image 0"),
        (torch.zeros(CH, H, W), [-1, 0, 2, 2, 0], ValueError, "image 0"),
        (torch.zeros(CH, H, W), [0, 0, 2, 2, 0.5], ValueError, "image 0"),
        (torch.zeros(CH, H, W), [0, 0, float("nan"), 2, 0], ValueError, "image 0"),
    ],
)
def test_replay_bad_input(image, aug, exc, fragment):
    with pytest.raises(exc) as e:
        kt.replay(image, aug)
    msg = str(e.value)
    assert fragment in msg and "\n" not in msg, msg
