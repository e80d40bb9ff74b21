"""The quantizers' C loops (quantizers/quantizer_kernels.c) against their torch code.

The C loops must give the torch path's values and widths bit for bit and its gradients up to the
order of float summation; without a compiler (or with HQRUN_NATIVE=0) the torch code runs. The
learned quantizers' torch path is checked against autograd references and finite differences in
tests/test_learned_ops.py (in float64, which never takes the C loops); QKeras's quantized_bits
and quantized_relu against QKeras's goldens in tests/test_qkeras_conformance.py (float32: the C
loops when a compiler is present) and against their torch code here.
"""

from __future__ import annotations

import logging
import shutil
from importlib import resources

import pytest
import torch
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from hqrun.quantizers import native
from hqrun.quantizers.learned_ops import SaturatingRound, WeightRound

HAS_CC = bool(shutil.which("cc") or shutil.which("gcc") or shutil.which("clang"))
needs_cc = pytest.mark.skipif(not HAS_CC, reason="no C compiler on this machine")


@pytest.fixture(autouse=True, scope="module")
def fresh_kernels(tmp_path_factory):
    """The tests build into their own cache and leave no loaded library behind."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HQRUN_CACHE_DIR", str(tmp_path_factory.mktemp("hqrun-cache")))
        native.kernels.cache_clear()
        yield
    native.kernels.cache_clear()


def run_both(fn, *inputs, grads_out):
    """(C loops, torch code) results of ``fn(*inputs)``: outputs and input gradients."""
    results = []
    for flag in ("1", "0"):
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("HQRUN_NATIVE", flag)
            native.kernels.cache_clear()
            assert (native.kernels() is not None) == (flag == "1")
            leaves = [t.detach().clone().requires_grad_(True) for t in inputs]
            outs = fn(*leaves)
            torch.autograd.backward([o for o, g in zip(outs, grads_out) if g is not None],
                                    [g for g in grads_out if g is not None])
            results.append(([o.detach() for o in outs], [t.grad for t in leaves]))
        native.kernels.cache_clear()
    return results


def assert_same(native_run, torch_run, grad_rtol=1e-5, zero_signs=True):
    """Values and widths equal, gradients close. ``zero_signs``: also the sign of every zero
    (the saturating clip of an empty element, bounds +0/-0, may give either zero: torch's
    vectorised clamp and the C loop pick differently; both are the value 0)."""
    (outs_c, grads_c), (outs_t, grads_t) = native_run, torch_run
    for a, b in zip(outs_c, outs_t):
        assert torch.equal(a, b)  # values and widths: bit for bit
        if zero_signs:
            assert torch.equal(torch.signbit(a), torch.signbit(b))
    assert torch.equal(grads_c[0], grads_t[0])  # the straight-through input gradient: exact
    for a, b in zip(grads_c[1:], grads_t[1:]):
        scale = float(b.abs().max()) if b.numel() else 0.0
        assert torch.allclose(a, b, rtol=grad_rtol, atol=grad_rtol * max(scale, 1.0))


SHAPES = [((64,), (200, 64)), ((), (100, 16)), ((4, 1, 1), (30, 4, 3, 3)), ((4, 3, 3), (30, 4, 3, 3))]


@needs_cc
@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), signed=st.booleans(), shapes=st.sampled_from(SHAPES),
       with_width_grad=st.booleans(), scale=st.sampled_from([1e-3, 1.0, 40.0, 3e6]))
def test_saturating_round_c_loops_equal_the_torch_code(seed, signed, shapes, with_width_grad, scale):
    fshape, xshape = shapes
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(xshape, generator=gen) * scale
    x.view(-1)[::7] = torch.round(x.view(-1)[::7] * 4) / 4 + 0.125  # exact ties at f = 2, 3
    x.view(-1)[::11] = 0.0
    f = torch.randint(-3, 9, fshape, generator=gen).float() + torch.rand(fshape, generator=gen) - 0.5
    i = torch.randint(-2, 6, fshape, generator=gen).float() + 0.3
    g = torch.randn(xshape, generator=gen)
    gw = torch.rand(fshape, generator=gen) if with_width_grad else None
    c_run, t_run = run_both(lambda a, b, c: SaturatingRound.apply(a, b, c, signed),
                            x, f, i, grads_out=[g, gw])
    assert_same(c_run, t_run, zero_signs=False)


@needs_cc
@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1),
       shapes=st.sampled_from([((64, 16), (64, 16)), ((64, 1), (64, 16)), ((), (32,)), ((8,), (8,))]),
       scale=st.sampled_from([1e-4, 0.5, 30.0, 5e5]))
def test_weight_round_c_loop_equals_the_torch_code(seed, shapes, scale):
    fshape, wshape = shapes
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(wshape, generator=gen) * scale
    w.view(-1)[::5] = torch.round(w.view(-1)[::5] * 8) / 8 + 1 / 16  # ties at f = 3
    w.view(-1)[::9] = 0.0
    f = torch.randint(-4, 12, fshape, generator=gen).float() + 0.4
    c_run, t_run = run_both(WeightRound.apply, w, f,
                            grads_out=[torch.randn(wshape, generator=gen), torch.rand(wshape, generator=gen)])
    assert_same(c_run, t_run)


@needs_cc
def test_weight_round_c_loop_rounds_half_to_even_and_prunes():
    w = torch.tensor([0.125, 0.375, -0.125, -0.375, 0.1, 0.0, 100.0])
    (wq, width), _ = run_both(WeightRound.apply, w, torch.tensor(2.0),
                              grads_out=[torch.ones(7), None])[0]
    assert wq.tolist() == [0.0, 0.5, -0.0, -0.5, 0.0, 0.0, 100.0]  # codes 0, 2, -0, -2, 0, 0, 400
    assert width.tolist() == [0, 3, 0, 2, 0, 0, 10]


@needs_cc
def test_learned_training_step_is_the_same_with_and_without_c_loops(monkeypatch):
    """One optimizer step of the learned jet model with its EBOPs penalty, both ways."""
    from hqrun.models import attach_weight_constraints, build_model, load_plan
    from hqrun.models.penalty import BetaSchedule, EbopsPenalty
    from hqrun.train.module import make_optimizer

    learned_plan = yaml.safe_load((resources.files("hqrun.conf") / "quant" / "learned.yaml").read_text())
    gen = torch.Generator().manual_seed(3)
    x, y = torch.randn(256, 16, generator=gen), torch.randint(0, 5, (256,), generator=gen)
    states = []
    for flag in ("1", "0"):
        monkeypatch.setenv("HQRUN_NATIVE", flag)
        native.kernels.cache_clear()
        plan = load_plan({**learned_plan, "beta": 1e-4})
        model = build_model({"name": "jet_dnn"}, plan, seed=0)
        model.train()
        opt = make_optimizer(model.parameters(), lr=1e-2)
        attach_weight_constraints(model, opt)
        penalty = EbopsPenalty(model, BetaSchedule(beta=1e-4))
        losses = []
        for _ in range(3):
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(model(x), y) + 1e-4 * penalty(model)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        states.append((losses, {k: v.clone() for k, v in model.state_dict().items()}))
    (loss_c, state_c), (loss_t, state_t) = states
    assert loss_c == pytest.approx(loss_t, rel=1e-5)
    for key in state_t:
        assert torch.allclose(state_c[key].float(), state_t[key].float(), rtol=1e-4, atol=1e-5), key


def test_native_off_switch_and_missing_compiler_fall_back_to_torch(monkeypatch, caplog):
    monkeypatch.setenv("HQRUN_NATIVE", "0")
    assert native.kernels() is None
    native.kernels.cache_clear()
    monkeypatch.setenv("HQRUN_NATIVE", "1")
    monkeypatch.setenv("CC", "/nonexistent/cc")
    with caplog.at_level(logging.WARNING, logger="hqrun.quantizers.native"):
        # the cache key includes the compiler, so this forces a (failing) build
        assert native.kernels() is None
    assert "torch code" in caplog.text
    wq, width = WeightRound.apply(torch.tensor([0.3, -0.5]), torch.tensor(2.0))  # still works
    assert wq.tolist() == [0.25, -0.5] and width.tolist() == [2.0, 2.0]


@needs_cc
def test_library_is_built_once_into_the_cache_atomically(monkeypatch, tmp_path):
    monkeypatch.setenv("HQRUN_CACHE_DIR", str(tmp_path))
    native.kernels.cache_clear()
    assert native.kernels() is not None
    built = list((tmp_path / "kernels").iterdir())
    assert len(built) == 1 and built[0].suffix == ".so"  # no temporary left behind
    calls = []
    monkeypatch.setattr(native, "_compile", lambda *a: calls.append(a))
    native.kernels.cache_clear()
    assert native.kernels() is not None and calls == []  # reused, not rebuilt


@needs_cc
@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), bits=st.integers(2, 24), integer=st.integers(0, 6),
       keep_negative=st.booleans(), symmetric=st.booleans(),
       scale=st.sampled_from([1e-3, 0.3, 2.0, 100.0]), shape=st.sampled_from([(64, 16), (5,), (200, 32)]))
def test_qkeras_fast_paths_in_c_equal_their_torch_code(seed, bits, integer, keep_negative, symmetric,
                                                     scale, shape):
    """quantized_bits(alpha=1) on weights and quantized_relu on activations, training mode."""
    from hqrun.quantizers import quantized_bits, quantized_relu

    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=gen) * scale
    x.view(-1)[::6] = torch.round(x.view(-1)[::6] * 4) / 4 + 0.125  # exact ties on fine grids
    x.view(-1)[::13] = 0.0
    g = torch.randn(shape, generator=gen)
    for make in (lambda: quantized_bits(bits, min(integer, bits - 1), alpha=1,
                                        keep_negative=keep_negative, symmetric=symmetric),
                 lambda: quantized_relu(bits, min(integer, bits))):
        q = make()
        q.train()
        c_run, t_run = run_both(lambda a: (q(a),), x, grads_out=[g])
        assert_same(c_run, t_run, zero_signs=False)


@needs_cc
@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), mode=st.sampled_from(["none", "kernel", "bias"]),
       shape=st.sampled_from([(64, 16), (5, 32), (7,)]))
def test_weight_frac_grad_c_loop_equals_the_torch_code(seed, mode, shape):
    """HGQ's fractional-bit gradient of rounded weights, with the EBOPs count's width gradient
    given compactly (``col * scale`` per column, or ``scale``) or absent: C and torch agree."""
    from hqrun.quantizers.learned_ops import _round_weights, _weight_frac_grad

    if mode == "kernel" and len(shape) == 1:
        mode = "bias"
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(shape, generator=gen)
    w.view(-1)[::5] = 0.0
    f = torch.randint(-2, 8, shape, generator=gen).float()
    g = torch.randn(shape, generator=gen)
    col = torch.randint(0, 9, (shape[-1],), generator=gen).float() if mode == "kernel" else None
    scale = None if mode == "none" else 3e-3
    results = []
    for flag in ("1", "0"):
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("HQRUN_NATIVE", flag)
            native.kernels.cache_clear()
            wq, width = _round_weights(w, f)
            results.append(_weight_frac_grad(g, None, w, wq, width, f.shape, col, scale))
        native.kernels.cache_clear()
    assert torch.allclose(results[0], results[1], rtol=1e-6, atol=1e-9)


def _both(fn):
    """``fn()`` with the C loops, then with the torch code."""
    out = []
    for flag in ("1", "0"):
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("HQRUN_NATIVE", flag)
            native.kernels.cache_clear()
            assert (native.kernels() is not None) == (flag == "1")
            out.append(fn())
        native.kernels.cache_clear()
    return out


@needs_cc
@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), bits=st.integers(1, 24), integer=st.integers(0, 6),
       keep_negative=st.booleans(), scale=st.sampled_from([1e-3, 0.3, 2.0, 100.0]),
       training=st.booleans())
def test_no_gradient_forwards_in_c_equal_their_torch_code(seed, bits, integer, keep_negative,
                                                          scale, training):
    """Validation and inference: quantized_bits (with and without QKeras's training residue) and
    quantized_relu without autograd take one C loop; the values are the torch code's (a ReLU's
    zero may come out +0 where torch gives -0: the same value)."""
    from hqrun.quantizers import quantized_bits, quantized_relu

    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(300, 16, generator=gen) * scale
    x.view(-1)[::6] = torch.round(x.view(-1)[::6] * 4) / 4 + 0.125  # exact ties
    x.view(-1)[::13] = 0.0
    x.view(-1)[5] = float("inf")
    x.view(-1)[7] = float("-inf")
    makers = [lambda: quantized_relu(bits, min(integer, bits))]
    if bits - int(keep_negative) > 0:
        makers.append(lambda: quantized_bits(bits, min(integer, bits - 1), alpha=1,
                                             keep_negative=keep_negative))
    for make in makers:
        q = make()
        q.train(training)

        def forward():
            with torch.no_grad():
                return q(x)

        c_out, t_out = _both(forward)
        # equal values, NaN where the torch code has NaN (inf - inf in the training residue)
        assert torch.equal(torch.isnan(c_out), torch.isnan(t_out)), str(q)
        assert torch.equal(c_out.nan_to_num(0.0), t_out.nan_to_num(0.0)), str(q)


def _scale_both(alpha, x, q):
    from hqrun.quantizers import ste

    return _both(lambda: ste.get_scale(alpha, x, q))


@needs_cc
@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), rows=st.integers(1, 80), cols=st.integers(1, 70),
       alpha=st.sampled_from(["auto", "auto_po2"]), conv=st.booleans(),
       log_scale=st.floats(-4, 2), q_kind=st.sampled_from(["sign", "ternary", "positive"]))
def test_channel_scale_in_c_equals_the_numpy_emulation_of_tensorflow(seed, rows, cols, alpha, conv,
                                                                     log_scale, q_kind):
    """QKeras's per-channel least-squares scale (ternary, binary, auto_po2 kernels): the C loop's
    products, TensorFlow-order column sums, division and power-of-two rounding give the numpy
    emulation's bits (tests/test_quantizers_fastpath.py checks that emulation against TF)."""
    from hqrun.quantizers import ste

    gen = torch.Generator().manual_seed(seed)
    shape = (1, rows, 1, cols) if conv else (rows, cols)
    x = torch.randn(shape, generator=gen) * 10.0**log_scale
    x.view(-1)[::11] = 0.0
    if q_kind == "ternary":
        q = torch.round(x / x.abs().amax().clamp_min(1e-30) * 3)
    elif q_kind == "positive":  # x * q is -0 where x < 0: numpy's sums start from +0
        q = (x > 0).float()
    else:
        q = ste.sign_nonzero(x)
    c_scale, t_scale = _scale_both(alpha, x, q)
    assert torch.equal(c_scale.view(torch.int32), t_scale.view(torch.int32))
    lone_column = cols % 8 == 1 and rows >= 8  # numpy sums it pairwise: the numpy code runs
    with pytest.MonkeyPatch.context():
        native.kernels.cache_clear()
        taken = ste._native_channel_scale(alpha, x, q, list(range(x.dim() - 1)))
        assert (taken is None) == lone_column
    native.kernels.cache_clear()


def test_ternary_scale_search_stops_at_its_fixed_point_with_the_same_result(monkeypatch):
    """ternary(alpha=auto_po2) repeats its 5 rounds only until the scale stops changing: the
    rounds after a fixed point are no-ops, so values and scales equal the full search's."""
    import importlib

    from hqrun.quantizers import get

    module = importlib.import_module("hqrun.quantizers.ternary")
    gen = torch.Generator().manual_seed(3)
    for shape in [(16, 64), (64, 32), (32, 5), (3, 3, 4, 8)]:
        w = torch.randn(shape, generator=gen) * 0.3
        for spec in ["ternary", "ternary(alpha='auto')", "ternary(alpha='auto_po2',number_of_unrolls=9)"]:
            q = get(spec).for_kernel()
            q.train()
            fast, fast_scale = q(w), q.scale
            with monkeypatch.context() as mp:
                mp.setattr(module, "same_bits", lambda a, b: False)
                full, full_scale = q(w), q.scale
            assert torch.equal(fast, full) and torch.equal(fast_scale, full_scale), (spec, shape)


@needs_cc
@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), bits=st.integers(2, 9),
       max_value=st.sampled_from([None, 0.0, 0.3, 1.0, 8.0, 100.0]),
       quadratic=st.booleans(), floor=st.booleans(), training=st.booleans(),
       log_scale=st.floats(-45, 5))
def test_po2_value_in_c_equals_its_torch_code(seed, bits, max_value, quadratic, floor, training,
                                              log_scale):
    """quantized_po2 without autograd (the fused chain's weights, inference): one C loop with the
    torch code's float32 operations — clip, TensorFlow's log, power of two, subnormal flush,
    QKeras's training residue — equal values, specials included."""
    from hqrun.quantizers import quantized_po2

    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(257, generator=gen) * 10.0**log_scale
    x[:12] = torch.tensor([0.0, -0.0, float("inf"), float("-inf"), float("nan"), 1e-45, -1e-38,
                           2.0**-126, 0.5, 0.75, 2.0**0.5, -(2.0**-0.5)])
    q = quantized_po2(bits, max_value, quadratic_approximation=quadratic,
                      log2_rounding="floor" if floor else "rnd")
    q.train(training)

    def forward():
        with torch.no_grad():
            return q(x)

    c_out, t_out = _both(forward)
    assert torch.equal(torch.isnan(c_out), torch.isnan(t_out)), str(q)
    assert torch.equal(c_out.nan_to_num(0.0), t_out.nan_to_num(0.0)), str(q)


def assert_scaled_kernel_same_in_c_and_torch(q, w, g):
    """A kernel quantizer with a per-channel scale: values, the scale (bit for bit) and the
    input gradient equal between its C loop and its torch code."""

    def run():
        leaf = w.clone().requires_grad_(True)
        out = q(leaf)
        out.backward(g)
        return out.detach(), q.scale.clone(), leaf.grad

    (c_out, c_scale, c_grad), (t_out, t_scale, t_grad) = _both(run)
    assert torch.equal(c_out, t_out) and torch.equal(c_grad, t_grad)
    assert torch.equal(c_scale.view(torch.int32), t_scale.view(torch.int32))


@needs_cc
@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), rows=st.integers(1, 70), cols=st.integers(1, 40),
       alpha=st.sampled_from(["auto", "auto_po2"]), unrolls=st.integers(1, 6),
       training=st.booleans(), conv=st.booleans(), log_scale=st.floats(-4, 2))
def test_ternary_scale_search_in_c_equals_its_torch_code(seed, rows, cols, alpha, unrolls, training,
                                                         conv, log_scale):
    """ternary(alpha="auto"/"auto_po2") on kernels — the search space's ternary — in one C loop:
    the scale, the values (with QKeras's training residue) and the input gradient equal the
    torch code's."""
    from hqrun.quantizers import ternary

    gen = torch.Generator().manual_seed(seed)
    shape = (1, rows, 1, cols) if conv else (rows, cols)
    w = torch.randn(shape, generator=gen) * 10.0**log_scale
    w.view(-1)[::9] = 0.0
    g = torch.randn(shape, generator=gen)
    q = ternary(alpha=alpha, number_of_unrolls=unrolls)
    q.train(training)
    assert_scaled_kernel_same_in_c_and_torch(q, w, g)


@needs_cc
@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), rows=st.integers(1, 70), cols=st.integers(1, 40),
       alpha=st.sampled_from(["auto", "auto_po2"]), use_01=st.booleans(), training=st.booleans(),
       log_scale=st.floats(-4, 2))
def test_binary_kernel_in_c_equals_its_torch_code(seed, rows, cols, alpha, use_01, training,
                                                  log_scale):
    """binary(alpha="auto"/"auto_po2") on kernels in one C loop: values, scales and the input
    gradient equal the torch code's."""
    from hqrun.quantizers import binary

    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(rows, cols, generator=gen) * 10.0**log_scale
    w.view(-1)[::7] = 0.0
    g = torch.randn(rows, cols, generator=gen)
    q = binary(use_01=use_01, alpha=alpha)
    q.train(training)
    assert_scaled_kernel_same_in_c_and_torch(q, w, g)
