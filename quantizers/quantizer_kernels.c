/* Fused loops of the quantizers' training step (hqrun.quantizers.native): the learned-width
 * quantizers' rounding and widths, and the residues of QKeras's quantized_bits and
 * quantized_relu fast paths.
 *
 * Why C: in the eager torch path each quantizer call is ~15 tensor operations over the whole
 * batch (clip, scale, round, un-scale, error, two masks, three reductions), each a full pass
 * through memory plus dispatch overhead; for the jet model (4,256 MACs) those passes cost more
 * than the matrix products. These loops do the same arithmetic in one pass forward and one pass
 * backward. The results are the torch path's exactly (values, widths) and its gradients up to
 * the order of float summation (tests/test_learned_native.py compares the two).
 *
 * Conventions: float32, contiguous; data tensors are viewed as (rows, n) with the per-element
 * parameters (already broadcast to n) shared by every row. Rounding is half to even, as
 * torch.round, written with the 2**23 trick so the loops vectorise on any x86-64/ARM target and
 * do not depend on the FPU rounding mode being changed (it never is: C's default is nearest-even).
 * Build flags (hqrun.quantizers.native): -O3 -ffp-contract=off, no -ffast-math (the trick and
 * the exact comparisons need IEEE semantics).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define F_LIMIT 24.0f  /* learned_ops.F_LIMIT: bits are clipped to [-24, 24] */
#define LN2F 0.6931471805599453f

/* round half to even, sign of zero kept (torch.round(-0.3) is -0.0) */
static inline float rne(float v) {
    float a = fabsf(v);
    float r = (a + 8388608.0f) - 8388608.0f; /* exact for a < 2**23 */
    r = a < 8388608.0f ? r : a;              /* larger magnitudes are integers already */
    return copysignf(r, v);
}

/* 2**k for an integer-valued k in [-125, 127], built from its IEEE bits (exact; the loops
 * vectorise, where ldexpf would be a library call per element) */
static inline float pow2i(float k) {
    union { uint32_t u; float f; } v;
    v.u = (uint32_t)((int32_t)k + 127) << 23;
    return v.f;
}

/* rne(v) clipped to [-F_LIMIT, F_LIMIT] (a NaN parameter gives NaN, as torch's clamp) */
static inline float clip_bits(float v) {
    float r = rne(v);
    r = r < -F_LIMIT ? -F_LIMIT : r;
    return r > F_LIMIT ? F_LIMIT : r;
}

/* frexp exponent of a positive normal float32: y = m * 2**e, 0.5 <= m < 1 */
static inline float frexp_exponent(float y) {
    union { float f; uint32_t u; } v;
    v.f = y;
    return (float)((int32_t)((v.u >> 23) & 0xffu) - 126);
}

/* The per-element constants of SaturatingRound from its trainable f (fractional bits) and i
 * (integer bits), both already broadcast to n elements: the rounded, clipped bits, the clip
 * bounds lo/hi, the scale 2**F and its inverse, the width max(I + F, 0) and the bound's
 * derivative factor ln2 * 2**(I-1) (2**I unsigned). */
typedef struct {
    float *lo, *hi, *s, *inv, *dbound;
} sat_consts;

static int sat_consts_make(sat_consts *c, const float *f, const float *i, int32_t is_signed,
                           float *width, int64_t n) {
    float *buf = (float *)malloc((size_t)(n > 0 ? n : 1) * 5 * sizeof(float));
    if (!buf) return -1;
    c->lo = buf; c->hi = buf + n; c->s = buf + 2 * n; c->inv = buf + 3 * n; c->dbound = buf + 4 * n;
    for (int64_t j = 0; j < n; ++j) {
        float fr = clip_bits(f[j]);
        float in = clip_bits(i[j]);
        float w = fmaxf(in + fr, 0.0f);
        float live = w > 0.0f ? 1.0f : 0.0f;
        float bound = pow2i(is_signed ? in - 1.0f : in);
        float inv = pow2i(-fr);
        c->s[j] = pow2i(fr);
        c->inv[j] = inv;
        c->hi[j] = (bound - inv) * live;     /* an empty element (width 0) is clipped to 0 */
        c->lo[j] = is_signed ? -(bound * live) : 0.0f;
        c->dbound[j] = bound * LN2F;
        if (width) width[j] = w;
    }
    return 0;
}

/* Saturating round (SaturatingRound.forward): xq = rne(clip(x, lo, hi) * 2**F) * 2**-F, and each
 * element's width when `width` is not NULL. Returns 0, or -1 when out of memory. */
int hq_sat_round_fwd(const float *restrict x, float *restrict xq, const float *restrict f,
                     const float *restrict i, int32_t is_signed, float *restrict width,
                     int64_t rows, int64_t n) {
    sat_consts c;
    if (sat_consts_make(&c, f, i, is_signed, width, n)) return -1;
    const float *restrict lo = c.lo, *restrict hi = c.hi, *restrict s = c.s, *restrict inv = c.inv;
    for (int64_t r = 0; r < rows; ++r) {
        const float *restrict xr = x + r * n;
        float *restrict qr = xq + r * n;
        for (int64_t j = 0; j < n; ++j) {
            float v = xr[j];
            float cl = v < lo[j] ? lo[j] : v;
            cl = cl > hi[j] ? hi[j] : cl;
            /* NaN stays NaN (neither comparison is true) */
            qr[j] = rne(cl * s[j]) * inv[j];
        }
    }
    free(c.lo);
    return 0;
}

/* Its backward: gx = g inside (lo, hi), else 0;
 * gf[j] = -ln2 * sum over rows of g * (xq - x) inside (HGQ's surrogate);
 * gi[j] = ln2 * 2**(I-1) * (sum of g over x > lo and x >= hi, minus, when signed, the sum of g
 * over x <= lo): the clip bounds' derivative in the integer bits.
 * Sums run down the rows in float32, as torch's reduction over the batch axis (in another
 * order). `gwidth` (per element, or NULL) times `gwidth_scale` is the gradient reaching each
 * width (the cost penalty's), added to gf and gi where the width is not 0. `gx_sum` (or NULL)
 * receives the column sums of gx, row after row. Returns 0 or -1 (memory). */
int hq_sat_round_bwd(const float *restrict g, const float *restrict x, const float *restrict f,
                     const float *restrict i, int32_t is_signed, const float *restrict gwidth,
                     float gwidth_scale, float *restrict gx, float *restrict gf,
                     float *restrict gi, float *restrict gx_sum, int64_t rows, int64_t n) {
    sat_consts c;
    float *width = gwidth ? (float *)malloc((size_t)(n > 0 ? n : 1) * sizeof(float)) : NULL;
    if ((gwidth && !width) || sat_consts_make(&c, f, i, is_signed, width, n)) {
        free(width);
        return -1;
    }
    const float *restrict lo = c.lo, *restrict hi = c.hi, *restrict s = c.s, *restrict inv = c.inv;
    float below_sign = is_signed ? -1.0f : 0.0f;
    for (int64_t j = 0; j < n; ++j) {
        gf[j] = 0.0f;
        gi[j] = 0.0f;
    }
    if (gx_sum)
        for (int64_t j = 0; j < n; ++j) gx_sum[j] = 0.0f;
    for (int64_t r = 0; r < rows; ++r) {
        const float *restrict gr = g + r * n;
        const float *restrict xr = x + r * n;
        float *restrict gxr = gx + r * n;
        if (gx_sum) /* column sums of gx: the bias gradient of the dense layer before */
            for (int64_t j = 0; j < n; ++j) {
                float inside = (xr[j] > lo[j] && hi[j] > xr[j]) ? 1.0f : 0.0f;
                gx_sum[j] += gr[j] * inside;
            }
        for (int64_t j = 0; j < n; ++j) {
            float v = xr[j], gv = gr[j];
            int above_lo = v > lo[j];
            int below_hi = hi[j] > v;
            float inside = (above_lo && below_hi) ? 1.0f : 0.0f;
            float gin = gv * inside;
            float delta = rne(v * s[j]) * inv[j] - v;
            gxr[j] = gin;
            gf[j] += gin * (inside != 0.0f ? delta : 0.0f);
            float sat = (above_lo && !below_hi) ? 1.0f : (above_lo ? 0.0f : below_sign);
            gi[j] += gv * sat;
        }
    }
    for (int64_t j = 0; j < n; ++j) {
        gf[j] *= -LN2F;
        gi[j] *= c.dbound[j];
        if (gwidth && width[j] > 0.0f) { /* d width / d f = d width / d i = 1 while live */
            float gwj = gwidth[j] * gwidth_scale;
            gf[j] += gwj;
            gi[j] += gwj;
        }
    }
    free(c.lo);
    free(width);
    return 0;
}

/* Weight round (WeightRound.forward): codes = rne(w * 2**F); width = two's-complement width of each
 * code (0 for a zero code: pruned), exactly as code_width's frexp of |2n + 1/2| in float32, with
 * F = f rounded half to even and clipped to [-24, 24]; wq = codes * 2**-F. */
void hq_weight_round_fwd(const float *restrict w, const float *restrict f, float *restrict wq,
                         float *restrict width, int64_t n) {
    for (int64_t j = 0; j < n; ++j) {
        float fr = clip_bits(f[j]);
        float code = rne(w[j] * pow2i(fr));
        float y = fabsf(2.0f * code + 0.5f);
        wq[j] = code * pow2i(-fr);
        width[j] = frexp_exponent(y);
    }
}

/* EBOPs of one dense layer from its widths (ebops.dense_chain_ebops, one layer):
 * sum over columns c of in_bits[c] * (sum over rows of kernel_width[r, c]), plus the sum of
 * bias_width (NULL: no bias); the column sums are written to colsum (what the count's
 * gradient needs). Widths are whole numbers, so every sum is exact in float32 below 2**24
 * and in the double returned: the numbers equal torch's. */
double hq_dense_ebops(const float *restrict in_bits, const float *restrict kernel_width,
                      int64_t rows, int64_t cols, const float *restrict bias_width, int64_t nb,
                      float *restrict colsum) {
    for (int64_t c = 0; c < cols; ++c) colsum[c] = 0.0f;
    for (int64_t r = 0; r < rows; ++r) {
        const float *restrict kr = kernel_width + r * cols;
        for (int64_t c = 0; c < cols; ++c) colsum[c] += kr[c];
    }
    double total = 0.0;
    for (int64_t c = 0; c < cols; ++c) total += (double)in_bits[c] * (double)colsum[c];
    if (bias_width)
        for (int64_t k = 0; k < nb; ++k) total += (double)bias_width[k];
    return total;
}

/* quantized_bits' training residue (bits.py fast path): d = x - clip(rne(x * c), lo, hi) * inv,
 * the caller returns x - d, which is QKeras's float32 value x + (xq - x) with gradient 1. The
 * clip is torch.clamp's (lo, then hi); inv is a power of two, so q * inv is exact. */
void hq_bits_residue(const float *restrict x, float *restrict d, float c, float lo, float hi,
                     float inv, int64_t n) {
    for (int64_t j = 0; j < n; ++j) {
        float v = x[j];
        float q = rne(v * c);
        q = q < lo ? lo : q;
        q = q > hi ? hi : q;
        d[j] = v - q * inv;
    }
}

/* quantized_relu's training residue (relu.py fast path): with h = hardtanh(x, 0, upper),
 * d = h - rne(h * c) * inv (the code clipped at `top` when `clip_top`); the caller returns
 * hardtanh(x, 0, upper) - d, whose value is the quantized ReLU and whose gradient is hardtanh's.
 * A NaN input stays NaN, as in torch's hardtanh. */
void hq_relu_residue(const float *restrict x, float *restrict d, float c, float inv, float upper,
                     float top, int32_t clip_top, int64_t n) {
    for (int64_t j = 0; j < n; ++j) {
        float v = x[j];
        float h = v < 0.0f ? 0.0f : v;
        h = h > upper ? upper : h;
        float q = rne(h * c);
        q = (clip_top && q > top) ? top : q;
        d[j] = h - q * inv;
    }
}

/* WeightRound's fractional-bit gradient per element (rows x cols, the weight's layout), with
 * delta = wq - w and live = (width > 0) formed here from the forward's values:
 * without a width gradient (has_width_grad == 0): out = g * delta * -ln2;
 * with one: out = gw * live + (-ln2 * g) * delta, where the width gradient is
 * gw = col[c] * scale (col not NULL: the EBOPs count's d/d b_w = input width of column c times
 * the count's gradient) or gw = scale (col NULL: a bias). The operations and their order are
 * torch's addcmul(gw * live, g, delta, value=-ln2), so the numbers are the torch code's. */
void hq_weight_frac_grad(const float *restrict g, const float *restrict w, const float *restrict wq,
                         const float *restrict width, const float *restrict col, float scale,
                         int32_t has_width_grad, float *restrict out, int64_t rows, int64_t cols) {
    const float m = -LN2F;
    for (int64_t r = 0; r < rows; ++r) {
        const float *restrict gr = g + r * cols;
        const float *restrict wr = w + r * cols;
        const float *restrict qr = wq + r * cols;
        const float *restrict br = width + r * cols;
        float *restrict orow = out + r * cols;
        if (!has_width_grad) {
            for (int64_t c = 0; c < cols; ++c) orow[c] = (gr[c] * (qr[c] - wr[c])) * m;
        } else if (col) {
            for (int64_t c = 0; c < cols; ++c) {
                float live = br[c] > 0.0f ? 1.0f : 0.0f;
                orow[c] = (col[c] * scale) * live + (m * gr[c]) * (qr[c] - wr[c]);
            }
        } else {
            for (int64_t c = 0; c < cols; ++c) {
                float live = br[c] > 0.0f ? 1.0f : 0.0f;
                orow[c] = scale * live + (m * gr[c]) * (qr[c] - wr[c]);
            }
        }
    }
}

/* The fast quantizers' values in one pass, without autograd nodes: for the fused QKeras chain
 * (qkeras_chain.py) and the no-gradient forwards (validation, inference).
 * quantized_bits: with `residue`, x - (x - xq), the training value (bits.py's `x - r` with r
 * from hq_bits_residue); without, xq itself (the inference value). */
void hq_bits_value(const float *restrict x, float *restrict out, float c, float lo, float hi,
                   float inv, int32_t residue, int64_t n) {
    if (residue) {
        for (int64_t j = 0; j < n; ++j) {
            float v = x[j];
            float q = rne(v * c);
            q = q < lo ? lo : q;
            q = q > hi ? hi : q;
            out[j] = v - (v - q * inv);
        }
        return;
    }
    for (int64_t j = 0; j < n; ++j) {
        float q = rne(x[j] * c);
        q = q < lo ? lo : q;
        q = q > hi ? hi : q;
        out[j] = q * inv;
    }
}

/* quantized_relu: h - (h - xq) with h = hardtanh(x, 0, upper), the value of relu.py's
 * `h.sub_(r)` with r from hq_relu_residue. That is xq exactly: h and xq lie within a factor 2 of
 * each other (or xq is 0), so h - xq is exact (Sterbenz) and so is h - (h - xq). It is the
 * inference value too (round, clip to [0, top]), up to the sign of a zero. Here h >= 0, so the
 * 2**23 rounding needs no sign handling; h * c < 2**23 unless clip_top (bits > 20). */
void hq_relu_value(const float *restrict x, float *restrict out, float c, float inv, float upper,
                   float top, int32_t clip_top, int64_t n) {
    if (clip_top) {
        for (int64_t j = 0; j < n; ++j) {
            float v = x[j];
            float h = v < 0.0f ? 0.0f : v;
            h = h > upper ? upper : h;
            float q = rne(h * c);
            q = q > top ? top : q;
            out[j] = q * inv;
        }
        return;
    }
    for (int64_t j = 0; j < n; ++j) {
        float v = x[j];
        float h = v < 0.0f ? 0.0f : v;
        h = h > upper ? upper : h;
        out[j] = ((h * c + 8388608.0f) - 8388608.0f) * inv;
    }
}

/* quantized_relu's clipped straight-through gradient, in place on g: torch's hardtanh_backward
 * (0 where x <= 0 or x >= upper, g elsewhere; a NaN input passes g, as torch's does). */
void hq_relu_grad_(const float *restrict x, float *restrict g, float upper, int64_t n) {
    for (int64_t j = 0; j < n; ++j) {
        float v = x[j];
        g[j] = (v <= 0.0f || v >= upper) ? 0.0f : g[j];
    }
}

/* TensorFlow's float32 log on the CPU (Eigen's plog), operation by operation as
 * ste._tf_log_finite and ste.tf_log compute it in torch (constants rounded to float32 as torch
 * does with Python scalars), special cases included: log(0) = -inf, log(inf) = inf, negatives and
 * NaN give NaN. Written without branches so that loops over it vectorise: frexp from the bits
 * (a subnormal first scaled by 2**23, exactly), the special cases selected at the end. */
static inline float tf_log_f(float x) {
    union { float f; uint32_t u; } b = { x };
    const uint32_t biased = (b.u >> 23) & 0xffu;
    union { float f; uint32_t u; } c = { biased ? x : x * 8388608.0f };
    const int32_t ei = (int32_t)((c.u >> 23) & 0xffu) - 126 - (biased ? 0 : 23);
    c.u = (c.u & 0x807fffffu) | (126u << 23);
    float m = c.f;
    float e = (float)ei;
    const int small = m < (float)0.707106781186547524;
    const float tmp = small ? m : 0.0f;
    m = m - 1.0f;
    e = e - (small ? 1.0f : 0.0f);
    m = m + tmp;
    float p = (float)0.18256296349849254;
    p = p * m + (float)1.0000000190281063;
    p = p * m + (float)1.0000000190281136;
    p = m * p;
    float q = (float)0.049616247954120038;
    q = q * m + (float)0.59923249590823520;
    q = q * m + (float)1.4999999999999927;
    q = q * m + 1.0f;
    const float r = p / q;
    float res = e * (float)0.6931471805599453 + r;
    res = x == 0.0f ? -INFINITY : res;
    res = x == INFINITY ? x : res;
    res = (x < 0.0f || x != x) ? NAN : res;
    return res;
}

/* round(tf_log(x) / ln2) (floor instead with `use_floor`): QKeras's power-of-two exponents,
 * bit for bit ste._tf_log2_round_ref / _tf_log2_floor_ref. */
void hq_tf_log2_round(const float *restrict x, float *restrict out, int32_t use_floor, int64_t n) {
    const float ln2 = (float)0.6931471805599453;
    for (int64_t j = 0; j < n; ++j) {
        const float l = tf_log_f(x[j]) / ln2;
        const float down = floorf(l), nearest = rne(l); /* both, then a select: it vectorises */
        out[j] = use_floor ? down : nearest;
    }
}

/* numpy's float32 sum over axis 0 of a (rows x ncols) block of a row-major array with row stride
 * `ld`, for ncols != 1 (a single column takes numpy's pairwise summation, not handled here): the
 * rows added one after the other to numpy's starting value +0 (so a column of -0 sums to +0). */
static void column_sums_seq(const float *a, int64_t rows, int64_t ld, int64_t ncols, int64_t row0,
                            int64_t row_step, float *out) {
    for (int64_t c = 0; c < ncols; ++c) out[c] = 0.0f;
    for (int64_t r = row0; r < rows; r += row_step)
        for (int64_t c = 0; c < ncols; ++c) out[c] = out[c] + a[r * ld + c];
}

/* 2**k for k integer-valued (or +-inf, NaN), exactly as torch.exp2 gives it for such k: built
 * from the bits (normal and subnormal results), no library call, so loops over it vectorise. */
static inline float exp2_int(float k) {
    float kc = k < -150.0f ? -150.0f : k;
    kc = kc > 128.0f ? 128.0f : kc;
    kc = kc == kc ? kc : 0.0f;
    const int32_t ki = (int32_t)kc;
    int32_t sh = ki + 149;
    sh = sh < 0 ? 0 : (sh > 31 ? 31 : sh);
    union { float f; uint32_t u; } normal = { 0.0f }, sub = { 0.0f };
    normal.u = (uint32_t)(ki + 127 < 1 ? 1 : (ki + 127 > 254 ? 254 : ki + 127)) << 23;
    sub.u = ki >= -149 ? (1u << sh) : 0u;
    float r = ki >= -126 ? normal.f : sub.f;
    r = ki > 127 ? INFINITY : r;
    return k != k ? k : r;
}

/* QKeras's power-of-two scale rounding, ste.po2_round: 2**round(tf_log(s + 1e-7) / ln2) */
static inline float po2_round_f(float s) {
    return exp2_int(rne(tf_log_f(s + (float)1e-7) / (float)0.6931471805599453));
}

/* Per-channel least-squares scale of QKeras's _get_scale for alpha "auto"/"auto_po2" on a kernel
 * viewed as (rows, cols), channels last: mean(x*q) / (mean(q*q) + 1e-7) per column, the means in
 * TensorFlow's summation order as ste._tf_column_sum reproduces it, then (po2) 2**round(tf_log(s
 * + 1e-7) / ln2). Returns 1 without writing when a single column is left over past the full
 * 8-column packets and rows >= 8 (numpy sums that column pairwise; the caller takes the numpy
 * code), else 0. Scratch: 2 * cols * 5 floats. */
int hq_channel_scale(const float *restrict x, const float *restrict q, int64_t rows, int64_t cols,
                     int32_t po2, float *restrict out) {
    const int64_t full = (cols / 8) * 8;
    if (cols - full == 1 && rows >= 8) return 1;
    if (rows < 1) return 1;
    float *prod = malloc(sizeof(float) * (size_t)(rows * cols * 2));
    float *sums = malloc(sizeof(float) * (size_t)(cols * 2 * 5));
    if (!prod || !sums) { free(prod); free(sums); return 1; }
    for (int64_t k = 0; k < rows * cols; ++k) {
        prod[k] = x[k] * q[k];
        prod[rows * cols + k] = q[k] * q[k];
    }
    for (int which = 0; which < 2; ++which) {
        const float *a = prod + which * rows * cols;
        float *total = sums + which * cols * 5;
        float *acc = total + cols;
        if (full) {
            if (rows >= 16) {
                const int64_t u = (rows / 4) * 4;
                for (int k = 0; k < 4; ++k)
                    column_sums_seq(a, u, cols, full, k, 4, acc + k * cols);
                for (int64_t c = 0; c < full; ++c)
                    total[c] = ((acc[c] + acc[cols + c]) + acc[2 * cols + c]) + acc[3 * cols + c];
                for (int64_t r = u; r < rows; ++r)
                    for (int64_t c = 0; c < full; ++c) total[c] = total[c] + a[r * cols + c];
            } else {
                column_sums_seq(a, rows, cols, full, 0, 1, total);
            }
        }
        if (cols > full) {
            if (cols - full == 1) { /* rows < 8: numpy adds them one after the other from 0 */
                float s = 0.0f;
                for (int64_t r = 0; r < rows; ++r) s = s + a[r * cols + full];
                total[full] = s;
            } else {
                column_sums_seq(a + full, rows, cols, cols - full, 0, 1, total + full);
            }
        }
    }
    const float n = (float)rows, eps = (float)1e-7;
    for (int64_t c = 0; c < cols; ++c) {
        float mean_qx = sums[c] / n;
        float mean_qq = sums[cols * 5 + c] / n;
        float s = mean_qx / (mean_qq + eps);
        out[c] = po2 ? po2_round_f(s) : s;
    }
    free(prod);
    free(sums);
    return 0;
}

/* quantized_po2's deterministic value (po2.py: _clip_power_of_two, sign, 2**e, TensorFlow's
 * flush of subnormals when `flush`, QKeras's training residue x + (xq - x) when `residue`), the
 * same float32 operations in the same order; min_exp/max_exp integer-valued. */
void hq_po2_value(const float *restrict x, float *restrict out, int32_t has_max, float max_value,
                  int32_t quadratic, int32_t use_floor, float min_exp, float max_exp,
                  int32_t flush, int32_t residue, int64_t n) {
    const float eps = (float)1e-7, ln2 = (float)0.6931471805599453, tiny = 1.17549435e-38f;
    for (int64_t j = 0; j < n; ++j) {
        float v = x[j];
        float a = fabsf(v);
        float xf = a < eps ? eps : a;
        if (has_max) xf = xf > max_value ? max_value : xf;
        const float root = sqrtf(xf);
        const float xi = quadratic ? root : xf;
        float l = tf_log_f(xi) / ln2;
        const float down = floorf(l), nearest = rne(l); /* both, then a select: it vectorises */
        l = use_floor ? down : nearest;
        float c = l < min_exp ? min_exp : l;
        c = c > max_exp ? max_exp : c;
        if (quadratic) c = 2.0f * c;
        float e = a < eps ? min_exp : c;
        float s = v > 0.0f ? 1.0f : (v < 0.0f ? -1.0f : 0.0f); /* torch.sign (NaN -> 0) */
        float xq = (s + (1.0f - fabsf(s))) * exp2_int(e);
        if (flush && fabsf(xq) < tiny) xq = 0.0f;
        out[j] = residue ? v + (xq - v) : xq;
    }
}

/* QKeras's ternary with alpha "auto"/"auto_po2" (ternary.py's deterministic branch) on a kernel
 * viewed as (rows, cols), channels last: the per-channel scale 2 * max|x| / 3 (power-of-two
 * rounded for auto_po2), then up to `unrolls` rounds of q = (|s * round(x / s)| >= s / 2) *
 * sign(x) and the least-squares scale (hq_channel_scale's), stopping at a fixed point. Writes
 * the quantized values s * q to `xq` and the scales to `scale`; the same float32 operations as
 * the torch code. Returns 1 without a result where hq_channel_scale does not apply, else 0. */
int hq_ternary(const float *restrict x, float *restrict xq, int64_t rows, int64_t cols,
               int32_t po2, int32_t unrolls, float *restrict scale) {
    const int64_t full = (cols / 8) * 8;
    if ((cols - full == 1 && rows >= 8) || rows < 1 || unrolls < 1) return 1;
    float *q = malloc(sizeof(float) * (size_t)(rows * cols));
    float *next = malloc(sizeof(float) * (size_t)cols);
    if (!q || !next) { free(q); free(next); return 1; }
    for (int64_t c = 0; c < cols; ++c) {
        float m = fabsf(x[c]);
        for (int64_t r = 1; r < rows; ++r) {
            float a = fabsf(x[r * cols + c]);
            m = (a > m || a != a) ? a : m; /* torch.amax: NaN wins */
        }
        float s = (2.0f * m) / 3.0f;
        scale[c] = po2 ? po2_round_f(s) : s;
    }
    for (int32_t it = 0; it < unrolls; ++it) {
        for (int64_t r = 0; r < rows; ++r)
            for (int64_t c = 0; c < cols; ++c) {
                const float v = x[r * cols + c], s = scale[c];
                const float kept = fabsf(s * rne(v / s)) >= s / 2.0f ? 1.0f : 0.0f;
                q[r * cols + c] = kept * (v > 0.0f ? 1.0f : (v < 0.0f ? -1.0f : 0.0f));
            }
        if (hq_channel_scale(x, q, rows, cols, po2, next)) { free(q); free(next); return 1; }
        int same = 1;
        for (int64_t c = 0; c < cols; ++c) {
            union { float f; uint32_t u; } a = { next[c] }, b = { scale[c] };
            same &= a.u == b.u;
            scale[c] = next[c];
        }
        if (same) break;
    }
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c) xq[r * cols + c] = scale[c] * q[r * cols + c];
    free(q);
    free(next);
    return 0;
}

/* QKeras's binary with alpha "auto"/"auto_po2" (binary.py's deterministic branch) on a kernel
 * viewed as (rows, cols), channels last: k = sign(x) with 0 -> +1 (then (k + 1) / 2 with
 * `use01`), the per-channel least-squares scale of hq_channel_scale, xq = scale * k. Returns 1
 * without a result where hq_channel_scale does not apply, else 0. */
int hq_binary(const float *restrict x, float *restrict xq, int64_t rows, int64_t cols,
              int32_t po2, int32_t use01, float *restrict scale) {
    const int64_t full = (cols / 8) * 8;
    if ((cols - full == 1 && rows >= 8) || rows < 1) return 1;
    for (int64_t k = 0; k < rows * cols; ++k) {
        const float v = x[k];
        const float s = v > 0.0f ? 1.0f : (v < 0.0f ? -1.0f : 0.0f); /* torch.sign */
        const float b = s + (1.0f - fabsf(s));
        xq[k] = use01 ? (b + 1.0f) / 2.0f : b; /* k, scaled in place below */
    }
    if (hq_channel_scale(x, xq, rows, cols, po2, scale)) return 1;
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c) xq[r * cols + c] = scale[c] * xq[r * cols + c];
    return 0;
}

/* Several quantized_bits training values in one call (the fused chain's weights: one call per
 * step instead of one per tensor): tensor k, n[k] floats at address src[k], into the next n[k]
 * places of `out`, with its constants consts[4k .. 4k+3] = (c, lo, hi, inv). */
void hq_bits_value_many(int32_t count, const int64_t *src, const int64_t *n, const float *consts,
                        float *restrict out) {
    for (int32_t k = 0; k < count; ++k) {
        const float *c = consts + 4 * k;
        hq_bits_value((const float *)(intptr_t)src[k], out, c[0], c[1], c[2], c[3], 1, n[k]);
        out += n[k];
    }
}
