"""The trainer's cross-entropy (class-major for few classes) against torch's."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from hqrun.train import losses
from hqrun.train.losses import cross_entropy


def _logits(rows: int, classes: int, scale: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = (torch.randn(rows, classes, generator=gen) * scale).requires_grad_()
    return x, torch.randint(0, classes, (rows,), generator=gen)


@settings(max_examples=60, deadline=None)
@given(rows=st.integers(1, 3000), classes=st.integers(2, 20), scale=st.sampled_from([0.01, 1.0, 30.0]),
       reduction=st.sampled_from(["mean", "sum"]), seed=st.integers(0, 2**31 - 1))
def test_equals_torch_cross_entropy(rows, classes, scale, reduction, seed):
    x, y = _logits(rows, classes, scale, seed)
    ours, ref = cross_entropy(x, y, reduction=reduction), F.cross_entropy(x, y, reduction=reduction)
    assert torch.equal(ours, ref)  # the loss: same kernels on the same numbers
    g_ours, = torch.autograd.grad(ours * 1.7, x)
    g_ref, = torch.autograd.grad(ref * 1.7, x)
    torch.testing.assert_close(g_ours, g_ref, rtol=1e-5, atol=1e-7)  # summation order only


def test_the_jet_batch_takes_the_class_major_layout_and_wide_ones_do_not(monkeypatch):
    calls = []
    real = F.log_softmax

    def spy(t, dim=None, **kw):
        calls.append(dim)
        return real(t, dim=dim, **kw)

    monkeypatch.setattr(losses.F, "log_softmax", spy)
    x, y = _logits(1024, 5, 1.0, 0)
    cross_entropy(x, y)
    assert calls == [0]
    calls.clear()
    for rows, classes in ((1024, losses.FEW_CLASSES), (losses.MIN_ROWS - 1, 5)):
        x, y = _logits(rows, classes, 1.0, 1)
        cross_entropy(x, y)
    assert calls == []  # torch's own cross_entropy, which does not go through F.log_softmax


def test_non_matrix_logits_fall_back_to_torch():
    x = torch.randn(2, 5, 300)
    y = torch.randint(0, 5, (2, 300))
    assert torch.equal(cross_entropy(x, y), F.cross_entropy(x, y))
