"""Model pieces against hand-computed references: FrameNorm over valid frames, the pair losses."""
import math

import torch

from vpkl.model.branches import FrameNorm
from vpkl.training.train import PairLoss


def test_frame_norm_uses_valid_frames_only():
    torch.manual_seed(0)
    x = torch.randn(3, 7, 5) * 4 + 2
    n_valid = torch.tensor([7, 3, 1])
    x[1, 3:] = 1e6   # padding must not enter the statistics
    x[2, 1:] = -1e6
    norm = FrameNorm(5).train()
    y = norm(x, n_valid)
    valid = torch.cat([x[0, :7], x[1, :3], x[2, :1]])          # (11, 5)
    ref = (valid - valid.mean(0)) / torch.sqrt(valid.var(0, unbiased=False) + 1e-5)
    assert torch.allclose(torch.cat([y[0, :7], y[1, :3], y[2, :1]]), ref, atol=1e-5)
    assert torch.all(y[1, 3:] == 0) and torch.all(y[2, 1:] == 0)


def test_frame_norm_inference_is_per_frame():
    torch.manual_seed(0)
    norm = FrameNorm(4)
    norm.train()(torch.randn(2, 9, 4) * 3 + 1, torch.tensor([9, 5]))  # move the running statistics
    norm.eval()
    x = torch.randn(1, 6, 4)
    whole = norm(x)
    one_by_one = torch.cat([norm(x[:, i:i + 1]) for i in range(6)], dim=1)
    bn = norm.bn
    ref = (x - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias
    assert torch.allclose(whole, ref, atol=1e-6) and torch.allclose(one_by_one, ref, atol=1e-6)


def test_pair_losses_hand_computed():
    cos = torch.tensor([0.5, -0.2])
    target = torch.tensor([1.0, -1.0])
    mse = PairLoss("mse")(cos, target)
    assert math.isclose(float(mse), ((0.5 - 1) ** 2 + (-0.2 + 1) ** 2) / 2, rel_tol=1e-6)
    # bce with the initial tau = 10, b = -3: logits 2 (positive) and -5 (negative)
    with torch.no_grad():
        bce = PairLoss("bce")(cos, target)
    ref = (math.log1p(math.exp(-2.0)) + math.log1p(math.exp(-5.0))) / 2
    assert math.isclose(float(bce), ref, rel_tol=1e-6)
