"""FlatAdam (hqrun/train/flat_adam.py): torch's Adam on flat parameter buffers.

The same fused kernel on the same numbers; packing moves elements between the kernel's vector
body and its scalar tail, which may round the last bit differently, hence ``same`` below.
"""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hqrun.models import attach_weight_constraints, build_model
from hqrun.models.constraints import _groups
from hqrun.train.flat_adam import FlatAdam
from hqrun.train.module import make_optimizer


def twin_params(seed: int, shapes=((3, 4), (5,), (2, 2, 3))):
    gen = torch.Generator().manual_seed(seed)
    a = [torch.nn.Parameter(torch.randn(s, generator=gen)) for s in shapes]
    b = [torch.nn.Parameter(p.detach().clone()) for p in a]
    return a, b


def same(ps, qs) -> bool:
    return all(torch.allclose(p, q, rtol=1e-6, atol=1e-7) for p, q in zip(ps, qs))


def loss_of(ps):
    return sum(((k + 1) * p).sin().pow(2).sum() for k, p in enumerate(ps))


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), wd=st.sampled_from([0.0, 1e-2]), lr=st.sampled_from([1e-3, 0.1]),
       steps=st.integers(1, 6))
def test_updates_equal_torch_adam(seed, wd, lr, steps):
    a, b = twin_params(seed)
    groups = lambda ps: [{"params": ps[:2]}, {"params": ps[2:], "lr": lr * 10}]  # noqa: E731
    flat = FlatAdam(groups(a), lr=lr, weight_decay=wd, fused=True)
    ref = torch.optim.Adam(groups(b), lr=lr, weight_decay=wd, fused=True)
    for _ in range(steps):
        for ps, opt in ((a, flat), (b, ref)):
            opt.zero_grad()
            loss_of(ps).backward()
            opt.step()
    assert same(a, b)
    # the state is Adam's: same keys and values, per flat buffer
    state = flat.state_dict()["state"]
    assert set(state[0]) == {"step", "exp_avg", "exp_avg_sq"} and float(state[0]["step"]) == steps


def test_parameters_keep_their_identity_and_view_the_flat_buffer():
    a, _ = twin_params(1)
    ids = [id(p) for p in a]
    opt = FlatAdam(a, lr=0.1, fused=True)
    assert [id(p) for p in a] == ids
    master = opt.param_groups[0]["params"][0]
    assert all(p.untyped_storage().data_ptr() == master.untyped_storage().data_ptr() for p in a)
    loss_of(a).backward()
    before = [p.detach().clone() for p in a]
    opt.step()
    assert all(not torch.equal(p, q) for p, q in zip(a, before))  # updated through the views


def test_replaced_data_and_missing_grads_are_never_lost():
    a, b = twin_params(2)
    flat = FlatAdam(a, lr=0.1, fused=True)
    ref = torch.optim.Adam(b, lr=0.1, fused=True)
    with torch.no_grad():
        a[0].data = torch.full((3, 4), 0.5)  # replaced by hand: taken back into the buffer
        b[0].data = torch.full((3, 4), 0.5)
    for ps, opt in ((a, flat), (b, ref)):
        opt.zero_grad()
        loss_of(ps).backward()
        opt.step()
    assert same(a, b)
    master = flat.param_groups[0]["params"][0]
    assert a[0].untyped_storage().data_ptr() == master.untyped_storage().data_ptr()
    # a parameter without a gradient counts as a zero gradient (documented difference)
    flat.zero_grad()
    a[1].sum().backward()
    flat.step()
    assert torch.isfinite(torch.cat([p.detach().reshape(-1) for p in a])).all()


def test_hooks_run_once_per_step_and_settings_it_does_not_fuse_fall_back_to_adam():
    a, b = twin_params(3)
    flat = FlatAdam(a, lr=0.05, amsgrad=True, fused=True)  # not the plain fused update
    ref = torch.optim.Adam(b, lr=0.05, amsgrad=True, fused=True)
    calls = []
    flat.register_step_post_hook(lambda *args: calls.append(1))
    for _ in range(3):
        for ps, opt in ((a, flat), (b, ref)):
            opt.zero_grad()
            loss_of(ps).backward()
            opt.step()
    assert calls == [1, 1, 1]
    assert same(a, b)


def test_state_dict_round_trip_resumes_identically():
    a, b = twin_params(4)
    first = FlatAdam(a, lr=0.05, fused=True)
    for _ in range(2):
        first.zero_grad()
        loss_of(a).backward()
        first.step()
    for p, q in zip(a, b):
        q.data.copy_(p.detach())
    resumed = FlatAdam(b, lr=0.05, fused=True)
    resumed.load_state_dict(copy.deepcopy(first.state_dict()))  # not sharing its tensors
    for ps, opt in ((a, first), (b, resumed)):
        opt.zero_grad()
        loss_of(ps).backward()
        opt.step()
    assert same(a, b)


@pytest.mark.parametrize("plan", ["q6", "q3"])
def test_weight_clips_cover_the_flat_buffers_in_few_spans(plan):
    """QKeras's Clip constraints still clip every constrained parameter, now as spans."""
    model = build_model({"name": "jet_dnn"}, plan, seed=0)
    opt = make_optimizer(model.parameters(), lr=1.0)
    attach_weight_constraints(model, opt)
    constrained = sum(len(fn()) for m in model.modules()
                      if callable(fn := getattr(m, "constraints", None)) and getattr(m, "constrained_params", None))
    tensors = sum(len(v) for v in _groups(model).values())
    assert constrained > 0 and tensors < constrained
    x = torch.randn(64, 16) * 50
    for _ in range(3):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), torch.zeros(64, dtype=torch.long)).backward()
        opt.step()
    for bound, params in _groups(model).items():
        for p in params:
            assert float(p.abs().max()) <= bound
