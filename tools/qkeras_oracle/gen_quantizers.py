"""Generate tests/golden/qkeras_quantizers.json with QKeras 0.9.0 itself.

Run (see docs/oracle.md):
    TF_USE_LEGACY_KERAS=1 /work/oracle-venv/bin/python tools/qkeras_oracle/gen_quantizers.py

For every quantizer spec of AutoQKeras 0.9.0's default search space (and of its example
notebook) plus a broad set of extra specs that cover every argument, the file stores an input
``x`` (float32), QKeras's output ``y = q(x)``, a fixed cotangent ``r`` and QKeras's gradient
``grad = d/dx sum(q(x) * r)`` (its straight-through estimator).

Two contexts are recorded because QKeras itself behaves differently in them:

* ``standalone``: ``get_quantizer(spec)(x)``, as a QActivation or a bias quantizer uses it.
* ``kernel``: what QDense/QConv do to a *kernel* quantizer before using it: they call
  ``_set_trainable_parameter()``, which silently turns ``alpha=None`` into ``alpha="auto_po2"``
  for quantized_bits (also forcing symmetric), binary, ternary and the stochastic ones.
  ``effective_spec`` is ``str()`` of the quantizer after that change, i.e. the spec a
  standalone quantizer needs to reproduce what the layer computes.

Stochastic quantizers are recorded in inference mode (Keras learning phase 0), where QKeras
falls back to the deterministic binary/ternary path; their training-mode output is only
described by its support (per-column scale times the allowed levels).
"""

from __future__ import annotations

import argparse
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import f32_list, setup_env, versions, write_json  # noqa: E402

setup_env()

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from qkeras import quantizers as qk  # noqa: E402
from qkeras.autoqkeras.quantization_config import default_quantization_config  # noqa: E402

K = tf.keras.backend
SEED = 20210511

# The AutoQKeras example notebook (google/qkeras notebook/AutoQKeras.ipynb) uses these two
# kernel specs in place of the default menu's alpha-less ones.
NOTEBOOK_KERNEL_SPECS = ["quantized_bits(4,0,1,alpha=1.0)", "quantized_bits(8,0,1,alpha=1.0)"]

STOCHASTIC = {"stochastic_binary", "stochastic_ternary", "bernoulli"}


def extra_specs() -> list[str]:
    """Specs beyond the default menus, chosen to exercise every argument QKeras 0.9.0 has."""
    s: list[str] = []
    # quantized_bits: bits x integer x symmetric (keep_negative=True); integer <= bits.
    for bits in (1, 2, 3, 4, 5, 6, 8):
        for integer in (0, 1, 2, 3):
            if integer > bits:
                continue
            for sym in (0, 1):
                s.append(f"quantized_bits({bits},{integer},{sym})")
    for bits, integer in ((1, 0), (2, 0), (3, 1), (4, 0), (4, 2), (6, 3), (8, 0), (8, 3)):
        s.append(f"quantized_bits({bits},{integer},0,keep_negative=False)")
    s += [
        "quantized_bits(4,0,1,keep_negative=False)",
        "quantized_bits(6,0,alpha=1)",
        "quantized_bits(6,0,0,alpha=1)",
        "quantized_bits(8,3,alpha=1)",
        "quantized_bits(4,1,alpha=0.5)",
        "quantized_bits(3,0,alpha=2.0)",
        "quantized_bits(2,0,1,alpha='auto')",
        "quantized_bits(4,0,alpha='auto')",
        "quantized_bits(8,2,alpha='auto')",
        "quantized_bits(4,0,alpha='auto_po2')",
        "quantized_bits(6,0,alpha='auto_po2')",
        "quantized_bits(3,1,alpha='auto_po2')",
        "quantized_bits(8,2,1,alpha='auto_po2')",
        "quantized_bits(16,6)",
    ]
    # quantized_relu: bits x integer.
    for bits in (1, 2, 3, 4, 6, 8):
        for integer in (0, 1, 2, 3):
            if integer > bits:
                continue
            s.append(f"quantized_relu({bits},{integer})")
    s += [
        "quantized_relu(4,0,negative_slope=0.25)",
        "quantized_relu(6,2,negative_slope=0.5)",
        "quantized_relu(8,3,negative_slope=0.125)",
        "quantized_relu(4,0,use_sigmoid=1)",
        "quantized_relu(6,2,use_sigmoid=1)",
        "quantized_relu(6,2,use_sigmoid=1,negative_slope=0.5)",
        "quantized_relu(4,2,relu_upper_bound=3.0,is_quantized_clip=False)",
        "quantized_relu(6,1,is_quantized_clip=False)",
        "quantized_relu(16,6)",
    ]
    # quantized_po2 / quantized_relu_po2: bits x max_value.
    for bits in (2, 3, 4, 5, 6, 8):
        s.append(f"quantized_po2({bits})")
    for bits, mv in ((3, 1), (4, 1), (4, 4), (5, 8), (6, 2), (8, 16)):
        s.append(f"quantized_po2({bits},{mv})")
    s += ["quantized_po2(4,quadratic_approximation=True)",
          "quantized_po2(5,4,log2_rounding='floor')"]
    for bits in (2, 3, 4, 6, 8):
        s.append(f"quantized_relu_po2({bits})")
    for bits, mv in ((3, 1), (4, 1), (5, 8), (6, 2)):
        s.append(f"quantized_relu_po2({bits},{mv})")
    s += ["quantized_relu_po2(4,negative_slope=0.25)",
          "quantized_relu_po2(5,4,quadratic_approximation=True)"]
    # binary / ternary.
    s += ["binary(use_01=1)", "binary(alpha=1)", "binary(alpha=0.5)", "binary(alpha='auto')",
          "binary(use_01=1,alpha='auto_po2')", "binary(use_01=1,alpha=2.0)",
          "ternary(alpha=1)", "ternary(alpha=0.5)", "ternary(threshold=0.5)",
          "ternary(alpha=2.0,threshold=0.25)", "ternary(alpha='auto')",
          "ternary(alpha='auto_po2')", "ternary(alpha='auto_po2',number_of_unrolls=1)"]
    # tanh / sigmoid.
    for bits in (2, 3, 4, 6, 8):
        s.append(f"quantized_tanh({bits})")
    s += ["quantized_tanh(4,symmetric=1)", "quantized_tanh(6,use_real_tanh=1)"]
    for bits in (2, 3, 4, 6, 8):
        s.append(f"quantized_sigmoid({bits})")
    s += ["quantized_sigmoid(4,symmetric=1)", "quantized_sigmoid(6,use_real_sigmoid=1)"]
    # stochastic ones (inference values + training support only).
    s += ["stochastic_binary(alpha='auto_po2')", "stochastic_ternary(alpha='auto_po2')",
          "stochastic_ternary(alpha='auto')", "bernoulli()", "bernoulli(alpha='auto_po2')"]
    return s


# --------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------


def _grid(lsb: float, lo: float, hi: float, rng: np.random.Generator, budget: int) -> list[float]:
    """Exact grid points and exact half-way points (k * lsb / 2) in [lo, hi].

    Half-way points are where rounding modes differ (tf.round is half-to-even); grid points and
    the saturation edges are where off-by-one-LSB bugs show.  Too many points are thinned,
    always keeping those near 0 and near both ends.
    """
    half = lsb / 2.0
    k_lo, k_hi = math.ceil(lo / half), math.floor(hi / half)
    ks = np.arange(k_lo, k_hi + 1)
    if len(ks) > budget:
        keep = (np.abs(ks) <= 10) | (ks - k_lo <= 10) | (k_hi - ks <= 10)
        rest = ks[~keep]
        n_more = max(0, budget - int(keep.sum()))
        extra = rng.choice(rest, size=min(n_more, len(rest)), replace=False) if n_more else []
        ks = np.concatenate([ks[keep], np.asarray(extra, dtype=ks.dtype)])
    vals = ks.astype(np.float64) * half
    return [float(v) for v in vals if np.float32(v) == v]


def _po2_points(min_exp: int, max_exp: int, rng: np.random.Generator) -> list[float]:
    """Exact powers of two around the exponent range, and values clearly between them.

    The exact log2 rounding boundaries (2**(e+0.5), irrational) are deliberately not used:
    QKeras decides them with float32 log(), whose last bit is implementation-defined.
    """
    pts: list[float] = []
    for e in range(max(min_exp - 2, -120), min(max_exp + 3, 120)):
        p = 2.0 ** e
        pts += [p, -p, p * 1.25, -p * 1.25, p * 1.6, -p * 1.6]
    return pts


def hints(q) -> tuple[list[float], float]:
    """Spec-specific interesting inputs and a typical magnitude for the random part."""
    rng = np.random.default_rng(0)
    name = type(q).__name__
    pts: list[float] = []
    scale = 1.0
    if name == "quantized_bits":
        unsigned = q.bits - q.keep_negative
        m_i = 2.0 ** q.integer
        if isinstance(q.alpha, str):
            scale = 1.0
        else:
            a = 1.0 if q.alpha is None else float(q.alpha)
            if unsigned > 0:
                lsb = m_i / 2.0 ** unsigned
                pts += [v * a for v in _grid(lsb, -m_i - 3 * lsb, m_i + 3 * lsb, rng, 200)]
            scale = m_i * a
    elif name == "quantized_relu":
        non_sign = q.bits - (q.negative_slope != 0.0)
        m_i, m = 2.0 ** q.integer, 2.0 ** non_sign
        lsb = m_i / m
        scale = m_i
        if q.use_sigmoid:
            pts += _grid(lsb, -2.5 * m_i, 2.5 * m_i, rng, 200)
        else:
            pts += _grid(lsb, -3 * lsb, m_i + 3 * lsb, rng, 160)
        if q.negative_slope:
            lsb_n = m_i / (m * q.negative_slope)
            pts += _grid(lsb_n, -m_i / q.negative_slope - 3 * lsb_n, 0.0, rng, 80)
        if q.relu_upper_bound:
            pts += [q.relu_upper_bound, -q.relu_upper_bound, q.relu_upper_bound + lsb]
    elif name in ("quantized_po2", "quantized_relu_po2"):
        pts += _po2_points(q._min_exp, q._max_exp, rng)
        if q.max_value is not None:
            mv = float(q.max_value)
            pts += [mv, -mv, mv * 1.01, -mv * 1.01, mv * 0.99]
        scale = 2.0 ** min(q._max_exp, 3)
    elif name in ("binary", "stochastic_binary", "bernoulli"):
        pts += [0.0, -0.0, 1e-6, -1e-6]
    elif name in ("ternary", "stochastic_ternary"):
        t = 0.33 if q.threshold is None else float(q.threshold)
        t32 = np.float32(t)
        pts += [float(t32), -float(t32), float(np.nextafter(t32, np.float32(0))),
                float(np.nextafter(t32, np.float32(1))), -float(np.nextafter(t32, np.float32(1)))]
    elif name == "quantized_tanh":
        m = 2.0 ** (q.bits - 1)
        pts += _grid(1.0 / m, -1.5, 1.5, rng, 200)
    elif name == "quantized_sigmoid":
        m = 2.0 ** q.bits
        pts += _grid(1.0 / m, -1.5, 1.5, rng, 200)
        scale = 2.0
    return pts, scale


def make_x(q, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Specials + spec grid + seeded normals, shuffled into ``shape`` (float32)."""
    n = int(np.prod(shape))
    pts, scale = hints(q)
    specials = [0.0, -0.0, 1e-8, -1e-8, 0.5, -0.5, 1.0, -1.0, 2.0, -2.0, 4.0, -4.0,
                8.0, -8.0, 100.0, -100.0, 1000.0, -1000.0]
    vals = specials + pts
    if len(vals) > (3 * n) // 4:
        idx = rng.choice(len(vals), size=(3 * n) // 4, replace=False)
        vals = [vals[i] for i in sorted(idx)]
    n_rand = n - len(vals)
    rnd = np.concatenate([
        rng.normal(0.0, 1.0, size=n_rand - n_rand // 2),
        rng.normal(0.0, 0.6 * scale, size=n_rand // 2),
    ])
    x = np.concatenate([np.asarray(vals, dtype=np.float64), rnd]).astype(np.float32)
    rng.shuffle(x)
    return x.reshape(shape)


def make_r(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Cotangent with short exact values and no zeros, so every gradient mask is visible."""
    levels = np.array([-2.0, -1.5, -1.0, -0.75, -0.5, -0.25, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0])
    return rng.choice(levels, size=shape).astype(np.float32)


# --------------------------------------------------------------------------------------
# Running QKeras
# --------------------------------------------------------------------------------------


def run(q, x: np.ndarray, r: np.ndarray, training: bool) -> tuple[np.ndarray, np.ndarray]:
    """QKeras's value and gradient of sum(q(x) * r) at x, in the given learning phase."""
    xt = tf.constant(x)
    rt = tf.constant(r)
    with K.learning_phase_scope(1 if training else 0):
        with tf.GradientTape() as tape:
            tape.watch(xt)
            y = q(xt)
            loss = tf.reduce_sum(y * rt)
        g = tape.gradient(loss, xt)
    y = np.asarray(y, dtype=np.float32)
    g = np.zeros_like(x) if g is None else np.asarray(g, dtype=np.float32)
    return y, g


def _uses_transcendental(q) -> tuple[bool, bool]:
    """(value, gradient) depend on float32 log/exp/tanh, whose last bit is library-defined."""
    name = type(q).__name__
    alpha = getattr(q, "alpha", None)
    tanh_ste = name in ("binary", "ternary", "stochastic_binary", "stochastic_ternary") and alpha is None
    value_tr = (
        name in ("quantized_po2", "quantized_relu_po2")
        or (isinstance(alpha, str) and "po2" in alpha)
        or (name == "quantized_tanh" and q.use_real_tanh)
        or (name == "quantized_sigmoid" and q.use_real_sigmoid)
        or tanh_ste
    )
    grad_tr = (
        tanh_ste
        or (name == "quantized_tanh" and q.use_real_tanh)
        or (name == "quantized_sigmoid" and q.use_real_sigmoid)
    )
    return value_tr, grad_tr


def train_support(q, x: np.ndarray) -> dict:
    """Per-column scale and allowed levels of a stochastic quantizer's training-mode output."""
    name = type(q).__name__
    levels = {"stochastic_binary": [-1.0, 1.0], "stochastic_ternary": [-1.0, 0.0, 1.0],
              "bernoulli": [0.0, 1.0]}[name]
    scale = np.broadcast_to(np.asarray(q.scale, dtype=np.float32).reshape(1, -1)
                            if np.ndim(q.scale) else np.float32(q.scale), (1, x.shape[1]))
    return {"levels": levels, "column_scale": f32_list(scale)}


def entry(spec: str, context: str, group: str, menus: list[str], shape, rng) -> dict:
    q = qk.get_quantizer(spec)
    if context == "kernel":
        q._set_trainable_parameter()
    # str() of a QKeras quantizer drops some arguments (relu_upper_bound, is_quantized_clip,
    # log2_rounding...), so it is only used where QKeras changed the object (kernel context).
    eff = str(q) if context == "kernel" else spec
    x = make_x(q, shape, rng)
    r = make_r(shape, rng)
    name = type(q).__name__
    stochastic = name in STOCHASTIC
    value_tr, grad_tr = _uses_transcendental(q)
    e = {
        "id": f"{context}:{spec}",
        "spec": spec,
        "effective_spec": eff,
        "qkeras_str": str(q),
        "context": context,
        "group": group,
        "menus": menus,
        "class_name": name,
        "bits": int(q.bits),
        "stochastic": stochastic,
        "value_transcendental": bool(value_tr),
        "grad_exact": not grad_tr,
        "shape": list(shape),
        "x": f32_list(x),
        "r": f32_list(r),
    }
    if name == "bernoulli":
        # No deterministic path at all: store only the support of a training-mode call.
        tf.random.set_seed(SEED)
        run(q, x, r, training=True)
        e["mode"] = "train_support_only"
        e["train_support"] = train_support(q, x)
        return e
    y, g = run(q, x, r, training=False)
    e["mode"] = "inference"
    e["y"] = f32_list(y)
    e["grad"] = f32_list(g)
    if stochastic:
        q2 = qk.get_quantizer(spec)
        if context == "kernel":
            q2._set_trainable_parameter()
        tf.random.set_seed(SEED)
        try:
            run(q2, x, r, training=True)
            e["train_support"] = train_support(q2, x)
        except AssertionError:
            # QKeras 0.9.0 asserts alpha is "auto"/"auto_po2" in stochastic_ternary's
            # training path, so a standalone stochastic_ternary() cannot train at all.
            e["train_support"] = None
            e["train_error"] = "QKeras raises AssertionError in training mode (alpha must be auto/auto_po2)"

    return e


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(
        os.path.dirname(__file__), "..", "..", "tests", "golden", "qkeras_quantizers.json"))
    args = ap.parse_args()
    tf.random.set_seed(SEED)
    rng = np.random.default_rng(SEED)

    menus: dict[str, list[str]] = {}
    for kind, menu in default_quantization_config.items():
        for spec in menu:
            menus.setdefault(spec, []).append(kind)
    for spec in NOTEBOOK_KERNEL_SPECS:
        menus.setdefault(spec, []).append("notebook_kernel")

    entries = []
    for spec, kinds in menus.items():
        entries.append(entry(spec, "standalone", "default_space", kinds, (16, 32), rng))
        if "kernel" in kinds or "notebook_kernel" in kinds:
            entries.append(entry(spec, "kernel", "default_space", kinds, (16, 32), rng))
    seen = set(menus)
    for spec in extra_specs():
        if spec in seen:
            continue
        seen.add(spec)
        entries.append(entry(spec, "standalone", "extra", [], (8, 32), rng))
    # Very large inputs: x + stop_gradient(xq - x) is not xq in float32 once ulp(x) > lsb.
    huge = np.array([1e4, -1e4, 1e5, -1e5, 1e6, -1e6, 3e6, -3e6, 1e7, -1e7, 3e7, -3e7,
                     1.5e8, -1.5e8, 1e9, -1e9], dtype=np.float32)
    for spec in ("quantized_bits(4,0,1)", "quantized_bits(8,3,1)", "quantized_bits(6,0,alpha=1)",
                 "quantized_relu(3,1)", "quantized_relu(6,0)", "quantized_po2(4,1)",
                 "quantized_relu_po2(4,4)", "binary", "ternary", "quantized_tanh(4)"):
        q = qk.get_quantizer(spec)
        x = np.tile(huge, 2).reshape(2, 16)
        r = make_r((2, 16), rng)
        y, g = run(q, x, r, training=False)
        vt, gt = _uses_transcendental(q)
        entries.append({
            "id": f"huge:{spec}", "spec": spec, "effective_spec": spec, "qkeras_str": str(q), "context": "standalone",
            "group": "huge_inputs", "menus": [], "class_name": type(q).__name__,
            "bits": int(q.bits), "stochastic": False, "value_transcendental": bool(vt),
            "grad_exact": not gt, "shape": [2, 16], "x": f32_list(x), "r": f32_list(r),
            "mode": "inference", "y": f32_list(y), "grad": f32_list(g)})

    doc = {
        "description": (
            "QKeras 0.9.0 quantizer outputs and straight-through gradients, generated by "
            "tools/qkeras_oracle/gen_quantizers.py. y = q(x); grad = d/dx sum(q(x)*r). "
            "Floats are float32 values written so that np.float32(v) is bit-exact. "
            "context=kernel: the quantizer after QDense's _set_trainable_parameter(); "
            "use effective_spec to reproduce it standalone."),
        "generator": {"script": "tools/qkeras_oracle/gen_quantizers.py", "seed": SEED,
                      "versions": versions(), "keras_learning_phase": "0 (inference) unless noted",
                      "internal_sigmoid": "hard (QKeras default)"},
        "default_quantization_config": default_quantization_config,
        "entries": entries,
    }
    out = os.path.abspath(args.out)
    write_json(out, doc)
    print(f"wrote {len(entries)} entries to {out} ({os.path.getsize(out) / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
