// The FPN's top-down merge at an exact 2x: out = lateral + nearest_upsample_2x(x), and its gradient to x.
//
// UpsampleAdd2x(lateral (N, C, 2h, 2w), x (N, C, h, w)) -> out (N, C, 2h, 2w), out[., ., i, j] = lateral[., ., i, j]
//   + x[., ., i / 2, j / 2] (integer division), one pass over the output.
// UpsampleAdd2xGrad(dout (N, C, 2h, 2w)) -> dx (N, C, h, w), dx[., ., i, j] = (dout[2i, 2j] + dout[2i, 2j + 1]) +
//   (dout[2i + 1, 2j] + dout[2i + 1, 2j + 1]). (The gradient to lateral is dout itself.)
#include <omp.h>

#include <cstdint>

#include "kernel_api.h"

namespace {

int Fail(const char *what) { return kernel_api::Fail("UpsampleAdd2x", what); }

bool IsFloat4d(int ndims, const char *dtype) { return ndims == 4 && kernel_api::IsFloat32(dtype); }

// True when there are `want` tensors, the first float32 (N, C, 2h, 2w) and the second float32 (N, C, h, w).
bool IsFinePair(int nparam, int want, const int *ndims, int64_t *const *shapes, const char *const *dtypes) {
  if (nparam != want || !IsFloat4d(ndims[0], dtypes[0]) || !IsFloat4d(ndims[1], dtypes[1])) return false;
  const int64_t *fine = shapes[0], *coarse = shapes[1];
  return fine[0] == coarse[0] && fine[1] == coarse[1] && fine[2] == 2 * coarse[2] && fine[3] == 2 * coarse[3];
}

}  // namespace

AOT_KERNEL(UpsampleAdd2x) {
  if (!IsFinePair(nparam, 3, ndims, shapes, dtypes)) {
    return Fail("expects float32 lateral (N, C, 2h, 2w), x (N, C, h, w) and one output");
  }
  const int64_t *xs = shapes[1];
  const auto *lateral = static_cast<const float *>(params[0]);
  const auto *x = static_cast<const float *>(params[1]);
  auto *out = static_cast<float *>(params[2]);
  const int64_t rows = xs[0] * xs[1] * xs[2], w = xs[3];
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const float *src = x + r * w;
    for (int64_t half = 0; half < 2; ++half) {
      const float *lat = lateral + (2 * r + half) * 2 * w;
      float *dst = out + (2 * r + half) * 2 * w;
#pragma omp simd
      for (int64_t j = 0; j < 2 * w; ++j) dst[j] = lat[j] + src[j / 2];
    }
  }
  return 0;
}

AOT_KERNEL(UpsampleAdd2xGrad) {
  if (!IsFinePair(nparam, 2, ndims, shapes, dtypes)) {
    return Fail("expects float32 dout (N, C, 2h, 2w) and one output dx (N, C, h, w)");
  }
  const int64_t *xs = shapes[1];
  const auto *dout = static_cast<const float *>(params[0]);
  auto *dx = static_cast<float *>(params[1]);
  const int64_t rows = xs[0] * xs[1] * xs[2], w = xs[3];
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const float *top = dout + 2 * r * 2 * w, *bottom = top + 2 * w;
    float *dst = dx + r * w;
#pragma omp simd
    for (int64_t j = 0; j < w; ++j) dst[j] = (top[2 * j] + top[2 * j + 1]) + (bottom[2 * j] + bottom[2 * j + 1]);
  }
  return 0;
}
