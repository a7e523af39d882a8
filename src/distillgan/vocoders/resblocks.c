/* A HiFi-GAN stage's parallel resblocks (ResBlock1) on one time tile, for narrow channel counts.
 *
 * Same function as InferenceGenerator._resblocks in hifigan.py, up to float rounding:
 *   total = sum over blocks b of  h_b,   h = x;  for each layer:  h += c2(lrelu(c1(lrelu(h))))
 * with zero "same" padding at the tile's edges, as torch's convolutions.
 *
 * Why it exists: at 8-32 channels oneDNN's convolutions reach a third to a half of a core's FMA
 * throughput. Here every output time step of C channels is C/8 vector registers, a block of
 * time steps accumulates in registers, and each weight vector loaded serves the whole block.
 * The activations and residual sums are fused into the convolutions' stores.
 *
 * Layout: channels-last (time-major) float32, x[t * C + c]. Weights per conv: w[k][c_in][c_out],
 * then bias[c_out]; conv1 then conv2 for each layer, layers in order, blocks in order.
 *
 * Portable C with GCC/Clang vector extensions: one 8-float vector is one AVX register, two SSE
 * or NEON registers. Compile with -O3 -march=native -ffp-contract=fast.
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

typedef float vec8 __attribute__((vector_size(32)));
typedef int mask8 __attribute__((vector_size(32)));

static inline vec8 load8(const float *p) { vec8 v; memcpy(&v, p, sizeof v); return v; }
static inline void store8(float *p, vec8 v) { memcpy(p, &v, sizeof v); }
static inline vec8 splat(float x) { return (vec8){x, x, x, x, x, x, x, x}; }
static inline vec8 lrelu8(vec8 v, vec8 slope) {
    vec8 scaled = v * slope;
    mask8 keep = v > scaled; /* max(v, slope * v): leaky ReLU for 0 < slope < 1 */
    return (vec8)((keep & (mask8)v) | (~keep & (mask8)scaled));
}

enum store_mode {
    STORE_LRELU,    /* out = lrelu(conv)                                     */
    STORE_RESIDUAL, /* out = conv + res (in place allowed); act = lrelu(out) */
    STORE_SUM_INTO, /* out += conv + res                                     */
};

/* One "same"-padded convolution over rows [t0, t1). `in` is row 0 of a buffer whose rows
 * down to -pad and up to t1 + pad + TB are readable and zero outside 0..T (the padding).
 * Registers hold TB time steps x CB output channels; wider layers take CB channels at a time. */
#define DEFINE_CONV(C, CB, TB)                                                                    \
    static inline void conv_block_##C(const float *in, const float *w, const float *bias, int K,     \
                                      int dilation, vec8 acc[TB][CB / 8]) {                          \
        for (int j = 0; j < TB; j++)                                                                 \
            for (int v = 0; v < CB / 8; v++) acc[j][v] = load8(bias + 8 * v);                         \
        for (int k = 0; k < K; k++) {                                                                \
            const float *xk = in + (size_t)k * dilation * C;                                         \
            const float *wk = w + (size_t)k * C * C;                                                 \
            _Pragma("GCC unroll 8") for (int ci = 0; ci < C; ci++) {                                 \
                vec8 wv[CB / 8];                                                                     \
                for (int v = 0; v < CB / 8; v++) wv[v] = load8(wk + ci * C + 8 * v);                 \
                _Pragma("GCC unroll 16") for (int j = 0; j < TB; j++) {                              \
                    vec8 xb = splat(xk[j * C + ci]);                                                 \
                    for (int v = 0; v < CB / 8; v++) acc[j][v] += xb * wv[v];                        \
                }                                                                                    \
            }                                                                                        \
        }                                                                                            \
    }                                                                                                \
    static void conv_##C(const float *in, int t0, int t1, const float *w, int K, int dilation,        \
                         enum store_mode mode, const float *res, float *out, float *act, vec8 slope) { \
        const float *bias = w + (size_t)K * C * C;                                                   \
        const int pad = dilation * (K - 1) / 2;                                                      \
        vec8 acc[TB][CB / 8];                                                                        \
        for (int t = t0; t < t1; t += TB) {                                                          \
            const int rows = t1 - t < TB ? t1 - t : TB;                                              \
            for (int c0 = 0; c0 < C; c0 += CB) {                                                     \
                conv_block_##C(in + (ptrdiff_t)(t - pad) * C, w + c0, bias + c0, K, dilation, acc);  \
                _Pragma("GCC unroll 16") for (int j = 0; j < TB; j++) {                              \
                    if (j >= rows) break;                                                            \
                    const size_t row = (size_t)(t + j) * C + c0;                                     \
                    for (int v = 0; v < CB / 8; v++) {                                               \
                        vec8 a = acc[j][v];                                                          \
                        float *o = out + row + 8 * v;                                                \
                        if (mode == STORE_LRELU) {                                                   \
                            store8(o, lrelu8(a, slope));                                             \
                        } else if (mode == STORE_RESIDUAL) {                                         \
                            a += load8(res + row + 8 * v);                                           \
                            store8(o, a);                                                            \
                            store8(act + row + 8 * v, lrelu8(a, slope));                             \
                        } else {                                                                     \
                            store8(o, load8(o) + a + load8(res + row + 8 * v));                      \
                        }                                                                            \
                    }                                                                                \
                }                                                                                    \
            }                                                                                        \
        }                                                                                            \
    }

/* Accumulators plus weight vectors fit in 16 AVX registers; block sizes measured fastest
 * on AVX2 (Zen 3) among those that fit. */
DEFINE_CONV(8, 8, 8)
DEFINE_CONV(16, 16, 6)
DEFINE_CONV(32, 32, 2)
DEFINE_CONV(64, 16, 6)

typedef void (*conv_fn)(const float *, int, int, const float *, int, int, enum store_mode,
                        const float *, float *, float *, vec8);

#define MAX_BLOCK_ROWS 8 /* the largest TB above */

int distillgan_resblocks_channels_supported(int channels) {
    return channels == 8 || channels == 16 || channels == 32 || channels == 64;
}

/* total[rows keep0..keep1) of the stage on x (rows 0..T), written to out (row keep0 first).
 * blocks: number of parallel resblocks; kernels[b]: kernel size; layers[b]: layer count;
 * dilations: all blocks' dilations in order; weights: all convs as described above.
 * Returns 0; -1 when the channel count is unsupported, -2 when memory runs out. */
int distillgan_resblocks(int C, const float *x, int T, int keep0, int keep1, float *out,
                         int blocks, const int *kernels, const int *layers, const int *dilations,
                         const float *weights, float slope) {
    conv_fn conv = C == 8 ? conv_8 : C == 16 ? conv_16 : C == 32 ? conv_32 : C == 64 ? conv_64 : NULL;
    if (conv == NULL) return -1;
    int margin = 0;
    for (int b = 0, i = 0; b < blocks; b++)
        for (int l = 0; l < layers[b]; l++, i++) {
            int pad = dilations[i] * (kernels[b] - 1) / 2;
            if (pad > margin) margin = pad;
        }
    margin += MAX_BLOCK_ROWS + 1;
    /* first = lrelu(x), inner = lrelu(conv1(.)) and act = lrelu(h) are convolution inputs, each
     * with `margin` rows of zeros on both sides: the padding, never written. h and total are not. */
    const size_t rows = (size_t)T * C, pad_rows = (size_t)margin * C, padded = rows + 2 * pad_rows;
    float *memory = malloc((3 * padded + 2 * rows) * sizeof(float));
    if (memory == NULL) return -2;
    float *first0 = memory + pad_rows, *inner0 = first0 + padded, *act0 = inner0 + padded;
    float *h = memory + 3 * padded, *total = h + rows;
    for (float *buffer = first0; buffer <= act0; buffer += padded) {
        memset(buffer - pad_rows, 0, pad_rows * sizeof(float));
        memset(buffer + rows, 0, pad_rows * sizeof(float));
    }
    memset(total, 0, rows * sizeof(float));
    const vec8 s = splat(slope);
    for (size_t i = 0; i < rows; i += 8) store8(first0 + i, lrelu8(load8(x + i), s));

    const float *w = weights;
    for (int b = 0, i = 0; b < blocks; b++) {
        const int K = kernels[b];
        const size_t conv_size = (size_t)K * C * C + C;
        const float *res = x, *input = first0;
        for (int l = 0; l < layers[b]; l++, i++) {
            conv(input, 0, T, w, K, dilations[i], STORE_LRELU, NULL, inner0, NULL, s);
            w += conv_size;
            if (l + 1 < layers[b]) {
                conv(inner0, 0, T, w, K, 1, STORE_RESIDUAL, res, h, act0, s);
                res = h;
                input = act0;
            } else { /* only the kept rows of the last layer matter */
                conv(inner0, keep0, keep1, w, K, 1, STORE_SUM_INTO, res, total, NULL, s);
            }
            w += conv_size;
        }
    }
    memcpy(out, total + (size_t)keep0 * C, (size_t)(keep1 - keep0) * C * sizeof(float));
    free(memory);
    return 0;
}
