"""Quantizer outputs: on their reported fixed-point grid and range, QKeras's known values and quirks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hqrun.quantizers import FixedPointType, get

torch.set_num_threads(1)

GRID_SPECS = [
    "quantized_bits(6,0,alpha=1)",
    "quantized_bits(4,0,1)",
    "quantized_bits(8,3)",
    "quantized_bits(4,2,keep_negative=False)",
    "quantized_bits(3,1,alpha=0.5)",
    "quantized_bits(1,0)",
    "quantized_bits(5,-1)",
    "quantized_relu(6,0)",
    "quantized_relu(3,1)",
    "quantized_relu(16,8)",
    "quantized_relu(4,0,negative_slope=0.25)",
    "quantized_relu(6,2,use_sigmoid=1)",
    "quantized_relu(4,2,relu_upper_bound=3.0,is_quantized_clip=False)",
    "quantized_po2(4,1)",
    "quantized_po2(5)",
    "quantized_po2(4,quadratic_approximation=True)",
    "quantized_relu_po2(4,4)",
    "quantized_relu_po2(4,negative_slope=0.25)",
    "binary",
    "binary(use_01=1)",
    "binary(alpha=0.5)",
    "stochastic_binary",
    "bernoulli",
    "ternary",
    "ternary(alpha=2.0,threshold=0.25)",
    "quantized_tanh(4)",
    "quantized_tanh(4,symmetric=1)",
    "quantized_sigmoid(6)",
    "quantized_bits(4,0,use_stochastic_rounding=1)",
    "quantized_relu(4,1,use_stochastic_rounding=1)",
    "quantized_hswish(6,2)",
]


def _x(n: int = 4096, spread: float = 6.0, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, generator=g) * spread
    edges = torch.tensor([0.0, -0.0, 1e-9, -1e-9, 0.5, -0.5, 0.25, 1.0, -1.0, 2.0**-7, 1e4, -1e4])
    return torch.cat([x, edges]).reshape(-1, 4)


@pytest.mark.parametrize("spec", GRID_SPECS)
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_outputs_lie_on_reported_type(spec: str, mode: str):
    q = get(spec)
    t = q.fixed_point_type()
    assert isinstance(t, FixedPointType), f"{spec} should report a fixed-point type"
    q.train(mode == "train")
    torch.manual_seed(1)
    with torch.no_grad():
        y = q(_x())
    if mode == "train" and spec.startswith("quantized_relu") and "stochastic" in spec:
        # QKeras quirk: quantized_relu's training-time stochastic rounding works on half an LSB.
        t = FixedPointType(t.width + 1, t.integer, t.signed)
    assert t.contains(y), f"{spec} ({mode}) produced values outside {t.hls_name}"


def test_stochastic_ternary_needs_auto_alpha_in_training():
    q = get("stochastic_ternary")
    assert q.eval()(torch.tensor([0.5, 0.1])).tolist() == [1.0, 0.0]
    with pytest.raises(Exception, match="alpha='auto'"):
        q.train()(torch.tensor([0.5, 0.1]))
    assert get("stochastic_ternary(alpha='auto_po2')").train()(torch.randn(6, 2)).shape == (6, 2)


@pytest.mark.parametrize(
    "spec, hls",
    [
        ("quantized_bits(6,0,alpha=1)", "ap_fixed<6,1,AP_RND_CONV,AP_SAT>"),
        ("quantized_bits(4,0,1)", "ap_fixed<4,1,AP_RND_CONV,AP_SAT_SYM>"),
        ("quantized_bits(8,3,keep_negative=False)", "ap_ufixed<8,3,AP_RND_CONV,AP_SAT>"),
        ("quantized_relu(6,0)", "ap_ufixed<6,0,AP_RND_CONV,AP_SAT>"),
        ("quantized_relu(4,2,negative_slope=0.5)", "ap_fixed<4,3,AP_RND_CONV,AP_SAT>"),
        ("quantized_tanh(4)", "ap_fixed<4,1,AP_RND_CONV,AP_SAT>"),
        ("quantized_sigmoid(4)", "ap_ufixed<4,0,AP_RND_CONV,AP_SAT>"),
        ("binary(use_01=1)", "ap_uint<1>"),
    ],
)
def test_reported_types(spec: str, hls: str):
    t = get(spec).fixed_point_type()
    # ap_int/ap_uint names are only used with TRN/WRAP; compare the format, not the modes.
    want = FixedPointType.from_hls_name(hls)
    assert (t.width, t.integer, t.signed) == (want.width, want.integer, want.signed)
    if "AP_" in hls:
        assert t.hls_name == hls


@pytest.mark.parametrize(
    "spec",
    ["quantized_bits(4,0,alpha='auto')", "quantized_bits(4,0,alpha='auto_po2')",
     "binary(alpha='auto_po2')", "ternary(alpha='auto')", "quantized_bits(4,0,alpha=0.3)"],
)
def test_data_dependent_scales_have_no_single_type(spec: str):
    q = get(spec)
    assert q.fixed_point_type() is None
    if "auto" in spec:
        q(torch.randn(8, 3))
        assert torch.is_tensor(q.scale) and q.scale.shape[-1] == 3


def test_auto_po2_outputs_are_per_channel_grids():
    q = get("quantized_bits(4,0,alpha='auto_po2')")
    x = torch.randn(16, 5) * torch.tensor([0.1, 1.0, 3.0, 0.01, 10.0])
    y = q(x).detach()
    step = q.channel_lsb().reshape(-1)
    types = q.channel_fixed_point_types()
    for c in range(5):
        e = int(torch.log2(step[c]).item())
        assert step[c] == 2.0**e
        codes = y[:, c] / step[c]
        assert torch.equal(codes, torch.round(codes)) and codes.abs().max() <= 7
        assert types[c].contains(y[:, c]) and types[c].lsb == step[c].item()


@settings(deadline=None, max_examples=40)
@given(
    bits=st.integers(1, 12),
    integer=st.integers(-2, 6),
    symmetric=st.booleans(),
    keep_negative=st.booleans(),
    values=st.lists(st.floats(-300, 300, allow_nan=False, width=32), min_size=1, max_size=30),
)
def test_quantized_bits_eval_equals_its_type(bits, integer, symmetric, keep_negative, values):
    if integer > bits or (bits == 1 and keep_negative):
        return
    q = get(f"quantized_bits({bits},{integer},{int(symmetric)},keep_negative={keep_negative},alpha=1)")
    q.eval()
    x = torch.tensor(values, dtype=torch.float32)
    assert torch.equal(q(x), q.fixed_point_type().quantize(x))


@settings(deadline=None, max_examples=40)
@given(
    bits=st.integers(1, 16),
    integer=st.integers(-2, 8),
    values=st.lists(st.floats(-300, 300, allow_nan=False, width=32), min_size=1, max_size=30),
)
def test_quantized_relu_equals_its_type(bits, integer, values):
    if integer > bits:
        return
    q = get(f"quantized_relu({bits},{integer})")
    x = torch.tensor(values, dtype=torch.float32)
    for mode in (True, False):  # quantized_relu has no float32 residue in either mode
        q.train(mode)
        assert torch.equal(q(x), q.fixed_point_type().quantize(x))


def test_known_qkeras_values():
    # Halves round to even (tf.round), saturation at -1 and 1 - lsb.
    q = get("quantized_bits(6,0,alpha=1)")
    x = torch.tensor([0.015625, 0.046875, -0.046875, 5.0, -5.0, 0.0])
    assert q(x).tolist() == [0.0, 0.0625, -0.0625, 31 / 32, -1.0, 0.0]
    # symmetric drops the most negative code
    assert get("quantized_bits(4,0,1)")(torch.tensor([-5.0])).item() == -0.875
    # QKeras's integer excludes the sign bit: quantized_bits(4,2) spans [-4, 3.5]
    assert get("quantized_bits(4,2)")(torch.tensor([-9.0, 9.0, 1.25])).tolist() == [-4.0, 3.5, 1.0]
    # one bit with keep_negative is a sign quantizer with sign(0) = +1
    assert get("quantized_bits(1,0)")(torch.tensor([-0.3, 0.0, 2.0])).tolist() == [-1.0, 1.0, 1.0]
    # quantized_relu saturates at 2**integer - lsb
    assert get("quantized_relu(3,1)")(torch.tensor([-1.0, 0.3, 9.0])).tolist() == [0.0, 0.25, 1.75]
    # po2: zero goes to the smallest power, sign(0) = +1; relu_po2 maps negatives to 2**min_exp
    assert get("quantized_po2(4,1)")(torch.tensor([0.0, -0.3, 0.7, 5.0])).tolist() == [
        2.0**-8, -0.25, 0.5, 1.0]
    assert get("quantized_relu_po2(4,4)")(torch.tensor([-3.0, 3.0])).tolist() == [2.0**-8, 4.0]
    # ternary: |x| < 0.33 -> 0
    assert get("ternary")(torch.tensor([0.2, -0.5, 0.33])).tolist() == [0.0, -1.0, 1.0]
    # binary: sign with 0 -> +1, use_01 maps to {0, 1}
    assert get("binary")(torch.tensor([-0.1, 0.0])).tolist() == [-1.0, 1.0]
    assert get("binary(use_01=1)")(torch.tensor([-0.1, 0.0])).tolist() == [0.0, 1.0]
    # hard tanh/sigmoid quantizers
    assert get("quantized_tanh(3)")(torch.tensor([-9.0, 0.3, 9.0])).tolist() == [-1.0, 0.25, 0.75]
    assert get("quantized_sigmoid(2)")(torch.tensor([-9.0, 0.0, 9.0])).tolist() == [0.0, 0.5, 0.75]


def test_training_mode_keeps_qkeras_float32_residue_eval_is_exact():
    q = get("quantized_bits(16,0)")
    x = torch.tensor([600.0, 3.0e7, 0.3], dtype=torch.float32)
    xq = q.fixed_point_type().quantize(x)
    xn, xqn = x.numpy(), xq.numpy()
    qkeras = xn + (xqn - xn)  # float32 arithmetic, as TensorFlow evaluates x + stop_gradient(xq - x)
    q.train()
    assert np.array_equal(q(x).numpy(), qkeras)
    assert not np.array_equal(qkeras, xqn)  # the residue really is there for huge inputs
    q.eval()
    assert torch.equal(q(x), xq)


@pytest.mark.parametrize(
    "spec, base",
    [
        ("quantized_bits(4,0,use_stochastic_rounding=1)", "quantized_bits(4,0)"),
        ("quantized_relu(4,1,use_stochastic_rounding=1)", "quantized_relu(4,1)"),
        ("stochastic_binary", "binary"),
        ("stochastic_ternary", "ternary"),
        ("quantized_po2(4,1,use_stochastic_rounding=1)", "quantized_po2(4,1)"),
    ],
)
def test_stochastic_quantizers(spec: str, base: str):
    q = get(spec)
    assert q.is_stochastic and not get(base).is_stochastic
    x = _x(512, 1.5)
    if spec.startswith("stochastic_ternary"):
        q = q.for_kernel()  # QKeras supports training-mode stochastic_ternary for auto alphas only
    q.train()
    torch.manual_seed(3)
    a = q(x)
    torch.manual_seed(3)
    b = q(x)
    torch.manual_seed(4)
    c = q(x)
    assert torch.equal(a, b), "same seed must give the same draw"
    assert not torch.equal(a, c), "another seed should give another draw"
    q.eval()
    ref = get(base).for_kernel() if spec.startswith("stochastic_ternary") else get(base)
    ref.eval()
    assert torch.equal(q(x), ref(x)), "eval mode is QKeras's inference (deterministic) branch"


def test_stochastic_rounding_is_unbiased_on_average():
    q = get("quantized_bits(4,0,use_stochastic_rounding=1)")
    torch.manual_seed(0)
    x = torch.full((20000,), 0.3)
    mean = q(x).mean().item()
    assert abs(mean - 0.3) < 0.005


def test_bernoulli_samples_in_eval_as_qkeras():
    q = get("bernoulli").eval()
    torch.manual_seed(0)
    y = q(torch.zeros(4000))
    assert set(y.unique().tolist()) == {0.0, 1.0}
    assert abs(y.mean().item() - 0.5) < 0.05


def test_ulaw_range_and_hswish_shape():
    q = get("quantized_ulaw(6,1)")
    y = q(_x())
    assert q.fixed_point_type() is None
    assert y.min() >= -2.0 and y.max() <= 2.0 * (1 - 2.0**-5)
    h = get("quantized_hswish(8,3)").eval()
    x = torch.tensor([-4.0, -3.0, -1.5, 0.0, 1.0, 3.0, 5.0])
    ref = x * torch.clamp(x + 3, 0, 6) / 6
    assert torch.allclose(h(x), ref, atol=2.0**-4)
    assert h.fixed_point_type().hls_name == "ap_fixed<8,4,AP_RND_CONV,AP_SAT>"


def test_linear_is_identity():
    q = get("linear")
    x = torch.randn(5, requires_grad=True)
    y = q(x)
    assert torch.equal(y, x) and q.is_identity and q.fixed_point_type() is None
    y.sum().backward()
    assert torch.equal(x.grad, torch.ones(5))


def test_bits_reported():
    assert get("quantized_bits(6,0,alpha=1)").bits == 6
    assert get("quantized_relu(3,1)").bits == 3
    assert get("quantized_po2(4,1)").bits == 4
    assert get("binary").bits == 1 and get("bernoulli").bits == 1
    assert get("ternary").bits == 2 and get("stochastic_ternary").bits == 2
    assert get("quantized_tanh(5)").bits == 5


def test_po2_exponent_range():
    q = get("quantized_po2(4,1)")
    assert q.exponent_range() == (-8, 0)
    assert get("quantized_po2(5)").exponent_range() == (-8, 7)
    assert get("quantized_relu_po2(4,4)").exponent_range() == (-8, 2)


def test_max_min_like_qkeras():
    assert get("quantized_bits(6,2)").max() == 4.0 and get("quantized_bits(6,2)").min() == -4.0
    assert get("quantized_relu(6,0)").max_value() == 1.0
    assert get("quantized_relu(6,0)").min_value() == 0.0
    assert get("quantized_tanh(4)").max_value() == 0.875
    assert get("binary(alpha=2.0)").max_value() == 2.0


def _np_quantized_bits(x, bits, integer, symmetric, keep_negative, alpha):
    """QKeras 0.9.0's quantized_bits graph, transcribed to numpy float32 (an independent oracle)."""
    f = np.float32
    unsigned = bits - int(keep_negative)
    m, m_i = f(2.0**unsigned), f(2.0**integer)
    if unsigned > 0:
        p = x * m / m_i
        lo = f(-0.0) if not keep_negative else -m + f(int(symmetric))
        xq = m_i * np.clip(np.round(p), lo, m - f(1)) / m
    else:
        s = np.sign(x)
        xq = s + (f(1) - np.abs(s))
    xq = f(alpha) * xq
    return x + (xq - x)  # x + stop_gradient(-x + xq), float32 residue included


@settings(deadline=None, max_examples=60)
@given(
    bits=st.integers(1, 16),
    integer=st.integers(0, 8),
    symmetric=st.booleans(),
    keep_negative=st.booleans(),
    alpha=st.sampled_from([1, 1.0, 0.5, 2.0, 0.75]),
    values=st.lists(st.floats(-1e7, 1e7, allow_nan=False, width=32), min_size=1, max_size=40),
)
def test_quantized_bits_training_matches_numpy_transcription(bits, integer, symmetric, keep_negative,
                                                             alpha, values):
    if integer > bits:
        return
    x = np.asarray(values, dtype=np.float32)
    q = get(f"quantized_bits({bits},{integer},{int(symmetric)},keep_negative={keep_negative},"
            f"alpha={alpha!r})").train()
    want = _np_quantized_bits(x, bits, integer, symmetric, keep_negative, alpha)
    got = q(torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(got, want)


@settings(deadline=None, max_examples=40)
@given(
    bits=st.integers(1, 16),
    integer=st.integers(0, 8),
    values=st.lists(st.floats(-1e5, 1e5, allow_nan=False, width=32), min_size=1, max_size=40),
)
def test_quantized_relu_matches_numpy_transcription(bits, integer, values):
    if integer > bits:
        return
    f = np.float32
    x = np.asarray(values, dtype=np.float32)
    m, m_i = f(2.0**bits), f(2.0**integer)
    bound = m_i - f(2.0 ** (integer - bits))
    x_u = np.where(x <= bound, np.maximum(x, f(0)), bound)
    xq = m_i * np.clip(np.round(x * m / m_i) / m, f(0), f(1) - f(1) / m)
    want = x_u + (xq - x_u)
    got = get(f"quantized_relu({bits},{integer})").train()(torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(got, want)
