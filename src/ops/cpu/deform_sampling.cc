// Deformable-conv sampling of the original model's DeformConv2d (modulated, one deformable group), CPU.
//
// For output pixel (i, j), tap k = K*a + b of a K x K kernel and stride s, the original samples x at
//   row clip(s*i + a + dy_k, 0, H-1), column clip(s*j + b + dx_k, 0, W-1)
// bilinearly (floor corners, the upper corner clipped to H-1 / W-1) and multiplies by sigmoid(logit_k).
// The offset/mask tensor holds [dy (K^2), dx (K^2), mask logits (K^2)] along its channels (the original's
// p_conv channels followed by m_conv's). The deformable conv is then sum_{k,c} weight[o, c, k] * col.
//
// Entry points follow MindSpore's "aot" Custom-op calling convention (inputs, then outputs, in `params`):
//   DeformSample:     x (N, C, H, W), offset_mask (N, 3K^2, Ho, Wo), stride (1,) int32
//                     -> col (N, Ho*Wo, K^2*C), col[n, i*Wo + j, k*C + c] = sigmoid(logit_k) * sample_k(x[n, c])
//   DeformSampleGrad: x, offset_mask, stride, dcol (N, Ho*Wo, K^2*C) -> dx (N, C, H, W), doffset_mask
//   DeformConv:       x, offset_mask, stride, weight (O, K^2*C) (index k*C + c) -> out (N, O, Ho, Wo) =
//                     weight @ col[n]^T, the sampling and the contraction per block of output pixels (the block's
//                     col stays in the core's cache; oneDNN's sgemm): the forward pass without col in memory.
// Gradients are the original's: through the bilinear weights (not the floor), zero where a coordinate is
// clipped (MindSpore's clip passes the gradient at the bounds themselves), through the sigmoid to the logits.
// Channel-last layouts make every inner loop a contiguous run over channels.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "kernel_api.h"
#include "layout.h"

extern "C" int dnnl_sgemm(char transa, char transb, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                          int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc);

namespace {

constexpr int kOffsetMaskGroups = 3;  // dy, dx, mask logits

struct Shape {
  int64_t n, c, h, w, ho, wo, k, k2, stride;
  int64_t Pixels() const { return ho * wo; }
  // Index of channel `group` * K^2 + k of the offset/mask tensor at image n, output pixel p.
  int64_t OffsetIndex(int64_t n_, int group, int64_t k_, int64_t p) const {
    return ((n_ * kOffsetMaskGroups + group) * k2 + k_) * Pixels() + p;
  }
};

// Bilinear sampling of one tap: corner offsets into the (H, W) grid and weights, in the original's arithmetic.
struct Tap {
  int64_t lt, rt, lb, rb;  // (low row, low col), (low row, high col), (high row, low col), (high row, high col)
  float fh, fw;            // fractional parts of the clipped row and column
  bool in_h, in_w;         // unclipped coordinate inside [0, size-1]: the clip passes the gradient
  float m;                 // sigmoid(mask logit)
  float w_lt, w_rt, w_lb, w_rb;
};

inline void Axis(float p, int64_t size, int64_t *low, int64_t *high, float *frac, bool *inside) {
  const float upper = static_cast<float>(size - 1);
  *inside = p >= 0.0f && p <= upper;
  const float clipped = p < 0.0f ? 0.0f : (p > upper ? upper : p);  // NaN stays NaN
  const float lowf = std::floor(clipped);
  *low = lowf >= 0.0f && lowf <= upper ? static_cast<int64_t>(lowf) : 0;  // NaN -> 0 (the weights stay NaN)
  *high = std::min(*low + 1, size - 1);
  *frac = clipped - static_cast<float>(*low);
}

inline Tap MakeTap(const Shape &s, const float *offset_mask, int64_t n, int64_t p, int64_t k) {
  const int64_t i = p / s.wo, j = p % s.wo, a = k / s.k, b = k % s.k;
  Tap t;
  int64_t r0, r1, q0, q1;
  Axis(static_cast<float>(s.stride * i + a) + offset_mask[s.OffsetIndex(n, 0, k, p)], s.h, &r0, &r1, &t.fh,
       &t.in_h);
  Axis(static_cast<float>(s.stride * j + b) + offset_mask[s.OffsetIndex(n, 1, k, p)], s.w, &q0, &q1, &t.fw,
       &t.in_w);
  t.m = 1.0f / (1.0f + std::exp(-offset_mask[s.OffsetIndex(n, 2, k, p)]));
  t.lt = r0 * s.w + q0;
  t.rt = r0 * s.w + q1;
  t.lb = r1 * s.w + q0;
  t.rb = r1 * s.w + q1;
  t.w_lt = (1.0f - t.fh) * (1.0f - t.fw);
  t.w_rb = t.fh * t.fw;
  t.w_rt = (1.0f - t.fh) * t.fw;
  t.w_lb = t.fh * (1.0f - t.fw);
  return t;
}

using kernel_api::IsDtype;

int Fail(const char *what) { return kernel_api::Fail("deform_sampling", what); }

// Validates x, offset_mask, stride and the col tensor at position col_pos (none if < 0); returns an error or nullptr.
const char *ReadShape(void **params, int *ndims, int64_t **shapes, const char **dtypes, int col_pos, Shape *s) {
  if (ndims[0] != 4 || !IsDtype(dtypes[0], "float32")) return "x must be float32 (N, C, H, W)";
  if (ndims[1] != 4 || !IsDtype(dtypes[1], "float32")) return "offset_mask must be float32 (N, 3K^2, Ho, Wo)";
  if (ndims[2] != 1 || shapes[2][0] != 1 || !IsDtype(dtypes[2], "int32")) return "stride must be int32 (1,)";
  s->n = shapes[0][0];
  s->c = shapes[0][1];
  s->h = shapes[0][2];
  s->w = shapes[0][3];
  s->k2 = shapes[1][1] / kOffsetMaskGroups;
  s->ho = shapes[1][2];
  s->wo = shapes[1][3];
  s->k = static_cast<int64_t>(std::lround(std::sqrt(static_cast<double>(s->k2))));
  s->stride = *static_cast<const int32_t *>(params[2]);
  if (shapes[1][0] != s->n || s->k * s->k * kOffsetMaskGroups != shapes[1][1] || s->k < 1) {
    return "offset_mask must be (N, 3K^2, Ho, Wo) with x's N";
  }
  if (s->stride < 1) return "stride must be >= 1";
  if (col_pos >= 0 && (ndims[col_pos] != 3 || shapes[col_pos][0] != s->n || shapes[col_pos][1] != s->Pixels() ||
      shapes[col_pos][2] != s->k2 * s->c || !IsDtype(dtypes[col_pos], "float32"))) {
    return "col must be float32 (N, Ho*Wo, K^2*C)";
  }
  return nullptr;
}

// col rows of output pixels [p0, p1) of image n: dst[(p - p0) * K^2*C + k*C + c] = sigmoid(logit_k) *
// sample_k(x[n, c]); xn is image n in channels-last layout (H*W, C).
void SamplePixels(const Shape &s, const float *xn, const float *offset_mask, int64_t n, int64_t p0, int64_t p1,
                  float *dst) {
  const int64_t c = s.c;
  for (int64_t p = p0; p < p1; ++p) {
    for (int64_t k = 0; k < s.k2; ++k, dst += c) {
      const Tap t = MakeTap(s, offset_mask, n, p, k);
      const float *v_lt = xn + t.lt * c, *v_rt = xn + t.rt * c, *v_lb = xn + t.lb * c, *v_rb = xn + t.rb * c;
#pragma omp simd
      for (int64_t ch = 0; ch < c; ++ch) {
        dst[ch] = (t.w_lt * v_lt[ch] + t.w_rb * v_rb[ch] + t.w_lb * v_lb[ch] + t.w_rt * v_rt[ch]) * t.m;
      }
    }
  }
}

}  // namespace

AOT_KERNEL(DeformSample) {
  if (nparam != 4) return Fail("DeformSample expects 3 inputs and 1 output");
  Shape s;
  if (const char *err = ReadShape(params, ndims, shapes, dtypes, 3, &s)) return Fail(err);
  const auto *x = static_cast<const float *>(params[0]);
  const auto *offset_mask = static_cast<const float *>(params[1]);
  auto *col = static_cast<float *>(params[3]);
  const int64_t hw = s.h * s.w, pix = s.Pixels(), c = s.c;

  layout::Buffer xt(static_cast<size_t>(s.n * hw * c));
  if (!xt.ok()) return Fail("out of memory");
  layout::ToChannelsLast(x, xt.data(), s.n, c, hw);

#pragma omp parallel for collapse(2) schedule(dynamic, 1)
  for (int64_t n = 0; n < s.n; ++n) {
    for (int64_t i = 0; i < s.ho; ++i) {
      SamplePixels(s, xt.data() + n * hw * c, offset_mask, n, i * s.wo, (i + 1) * s.wo,
                   col + (n * pix + i * s.wo) * s.k2 * c);
    }
  }
  return 0;
}

AOT_KERNEL(DeformConv) {
  if (nparam != 5) return Fail("DeformConv expects 4 inputs and 1 output");
  Shape s;
  if (const char *err = ReadShape(params, ndims, shapes, dtypes, -1, &s)) return Fail(err);
  const int64_t taps = s.k2 * s.c;
  if (ndims[3] != 2 || shapes[3][1] != taps || !IsDtype(dtypes[3], "float32")) {
    return Fail("weight must be float32 (O, K^2*C)");
  }
  const int64_t o = shapes[3][0];
  if (ndims[4] != 4 || shapes[4][0] != s.n || shapes[4][1] != o || shapes[4][2] != s.ho || shapes[4][3] != s.wo) {
    return Fail("out must be (N, O, Ho, Wo)");
  }
  const auto *x = static_cast<const float *>(params[0]);
  const auto *offset_mask = static_cast<const float *>(params[1]);
  const auto *weight = static_cast<const float *>(params[3]);
  auto *out = static_cast<float *>(params[4]);
  const int64_t hw = s.h * s.w, pix = s.Pixels();
  layout::Buffer xt(static_cast<size_t>(s.n * hw * s.c));
  if (!xt.ok()) return Fail("out of memory");
  layout::ToChannelsLast(x, xt.data(), s.n, s.c, hw);
  constexpr int64_t kBlock = 128;  // output pixels per task
  const int64_t blocks = (pix + kBlock - 1) / kBlock;
  int failed = 0;
#pragma omp parallel
  {
    layout::Buffer col(static_cast<size_t>(kBlock * taps));
    if (!col.ok()) {
#pragma omp atomic write
      failed = 1;
    }
#pragma omp for collapse(2) schedule(dynamic, 1)
    for (int64_t n = 0; n < s.n; ++n) {
      for (int64_t b = 0; b < blocks; ++b) {
        if (failed) continue;
        const int64_t p0 = b * kBlock, p1 = std::min(pix, p0 + kBlock);
        SamplePixels(s, xt.data() + n * hw * s.c, offset_mask, n, p0, p1, col.data());
        dnnl_sgemm('N', 'T', o, p1 - p0, taps, 1.0f, weight, taps, col.data(), taps, 0.0f, out + n * o * pix + p0,
                   pix);
      }
    }
  }
  return failed ? Fail("out of memory") : 0;
}

AOT_KERNEL(DeformSampleGrad) {
  if (nparam != 6) return Fail("DeformSampleGrad expects 4 inputs and 2 outputs");
  Shape s;
  if (const char *err = ReadShape(params, ndims, shapes, dtypes, 3, &s)) return Fail(err);
  for (int i = 4; i < 6; ++i) {
    if (ndims[i] != 4 || !IsDtype(dtypes[i], "float32") || !std::equal(shapes[i], shapes[i] + 4, shapes[i - 4])) {
      return Fail("gradients must have the shapes of x and offset_mask");
    }
  }
  const auto *x = static_cast<const float *>(params[0]);
  const auto *offset_mask = static_cast<const float *>(params[1]);
  const auto *dcol = static_cast<const float *>(params[3]);
  auto *dx_out = static_cast<float *>(params[4]);
  auto *doffset_mask = static_cast<float *>(params[5]);
  const int64_t hw = s.h * s.w, pix = s.Pixels(), c = s.c;
  constexpr int kSums = 3;  // per tap: d/d row, d/d column, d/d mask, each summed over the thread's channels
  const int64_t sums_per_thread = s.n * pix * s.k2 * kSums;

  const int max_threads = omp_get_max_threads();
  layout::Buffer xt(static_cast<size_t>(s.n * hw * c));
  layout::Buffer gxt(static_cast<size_t>(s.n * hw * c));
  layout::Buffer partial(static_cast<size_t>(max_threads * sums_per_thread));
  if (!xt.ok() || !gxt.ok() || !partial.ok()) return Fail("out of memory");
  layout::ToChannelsLast(x, xt.data(), s.n, c, hw);
  int threads = 1;

#pragma omp parallel num_threads(max_threads)
  {
#pragma omp single
    threads = omp_get_num_threads();
    // Each thread owns a channel range: its scatter-adds into gxt never meet another thread's.
    const int tid = omp_get_thread_num(), nth = omp_get_num_threads();
    const int64_t c0 = c * tid / nth, c1 = c * (tid + 1) / nth;
    float *sums = partial.data() + tid * sums_per_thread;
    for (int64_t n = 0; n < s.n; ++n) {
      const float *xn = xt.data() + n * hw * c;
      float *gn = gxt.data() + n * hw * c;
      for (int64_t q = 0; q < hw; ++q) std::fill(gn + q * c + c0, gn + q * c + c1, 0.f);
      for (int64_t p = 0; p < pix; ++p) {
        const float *g = dcol + (n * pix + p) * s.k2 * c;
        for (int64_t k = 0; k < s.k2; ++k, g += c) {
          const Tap t = MakeTap(s, offset_mask, n, p, k);
          const float *v_lt = xn + t.lt * c, *v_rt = xn + t.rt * c, *v_lb = xn + t.lb * c, *v_rb = xn + t.rb * c;
          float s_h = 0.f, s_w = 0.f, s_m = 0.f;
#pragma omp simd reduction(+ : s_h, s_w, s_m)
          for (int64_t ch = c0; ch < c1; ++ch) {
            const float gv = g[ch];
            const float lt = v_lt[ch], rt = v_rt[ch], lb = v_lb[ch], rb = v_rb[ch];
            s_h += gv * ((1.0f - t.fw) * (lb - lt) + t.fw * (rb - rt));
            s_w += gv * ((1.0f - t.fh) * (rt - lt) + t.fh * (rb - lb));
            s_m += gv * (t.w_lt * lt + t.w_rb * rb + t.w_lb * lb + t.w_rt * rt);
          }
          float *out = sums + ((n * pix + p) * s.k2 + k) * kSums;
          out[0] = s_h;
          out[1] = s_w;
          out[2] = s_m;

          // Clipped corners coincide (their weights are then exactly 0): fold them so that each channel loop
          // writes distinct addresses and can be vectorised.
          float *g_lt = gn + t.lt * c, *g_rt = gn + t.rt * c, *g_lb = gn + t.lb * c, *g_rb = gn + t.rb * c;
          float u_lt = t.w_lt, u_rt = t.w_rt, u_lb = t.w_lb, u_rb = t.w_rb;
          if (t.lt == t.lb) {
            u_lt += u_lb, u_rt += u_rb, u_lb = u_rb = 0.f;
            g_lb = g_rb = nullptr;
          }
          if (t.lt == t.rt) {
            u_lt += u_rt, u_lb += u_rb, u_rt = u_rb = 0.f;
            g_rt = g_rb = nullptr;
          }
          const float a_lt = t.m * u_lt, a_rt = t.m * u_rt, a_lb = t.m * u_lb, a_rb = t.m * u_rb;
          if (g_rb != nullptr) {
#pragma omp simd
            for (int64_t ch = c0; ch < c1; ++ch) {
              const float gv = g[ch];
              g_lt[ch] += gv * a_lt;
              g_rt[ch] += gv * a_rt;
              g_lb[ch] += gv * a_lb;
              g_rb[ch] += gv * a_rb;
            }
          } else if (g_rt != nullptr) {
#pragma omp simd
            for (int64_t ch = c0; ch < c1; ++ch) {
              g_lt[ch] += g[ch] * a_lt;
              g_rt[ch] += g[ch] * a_rt;
            }
          } else if (g_lb != nullptr) {
#pragma omp simd
            for (int64_t ch = c0; ch < c1; ++ch) {
              g_lt[ch] += g[ch] * a_lt;
              g_lb[ch] += g[ch] * a_lb;
            }
          } else {
#pragma omp simd
            for (int64_t ch = c0; ch < c1; ++ch) g_lt[ch] += g[ch] * a_lt;
          }
        }
      }
    }
  }

  layout::ToChannelsFirst(gxt.data(), dx_out, s.n, c, hw);
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t n = 0; n < s.n; ++n) {
    for (int64_t p = 0; p < pix; ++p) {
      for (int64_t k = 0; k < s.k2; ++k) {
        float sh = 0.f, sw = 0.f, sm = 0.f;
        for (int t = 0; t < threads; ++t) {
          const float *in = partial.data() + t * sums_per_thread + ((n * pix + p) * s.k2 + k) * kSums;
          sh += in[0];
          sw += in[1];
          sm += in[2];
        }
        const Tap tap = MakeTap(s, offset_mask, n, p, k);
        doffset_mask[s.OffsetIndex(n, 0, k, p)] = tap.in_h ? tap.m * sh : 0.0f;
        doffset_mask[s.OffsetIndex(n, 1, k, p)] = tap.in_w ? tap.m * sw : 0.0f;
        doffset_mask[s.OffsetIndex(n, 2, k, p)] = sm * (tap.m * (1.0f - tap.m));
      }
    }
  }
  return 0;
}
