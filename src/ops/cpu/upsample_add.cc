// The FPN's top-down merge at an exact 2x: out = lateral + nearest_upsample_2x(x), and its gradient to x.
//
// UpsampleAdd2x(lateral (N, C, 2h, 2w), x (N, C, h, w)) -> out (N, C, 2h, 2w), out[., ., i, j] = lateral[., ., i, j]
//   + x[., ., i / 2, j / 2] (integer division), one pass over the output.
// UpsampleAdd2xGrad(dout (N, C, 2h, 2w)) -> dx (N, C, h, w), dx[., ., i, j] = (dout[2i, 2j] + dout[2i, 2j + 1]) +
//   (dout[2i + 1, 2j] + dout[2i + 1, 2j + 1]). (The gradient to lateral is dout itself.)
#include <omp.h>

#include <cstdint>
#include <cstdio>
#include <cstring>

namespace {

int Fail(const char *message) {
  std::fprintf(stderr, "UpsampleAdd2x: %s\n", message);
  return 1;
}

bool IsFloat4d(int ndims, const char *dtype) { return ndims == 4 && std::strcmp(dtype, "float32") == 0; }

}  // namespace

extern "C" int UpsampleAdd2x(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                             void *stream, void *extra) {
  (void)stream;
  (void)extra;
  if (nparam != 3 || !IsFloat4d(ndims[0], dtypes[0]) || !IsFloat4d(ndims[1], dtypes[1])) {
    return Fail("expects float32 lateral (N, C, 2h, 2w), x (N, C, h, w) and one output");
  }
  const int64_t *ls = shapes[0], *xs = shapes[1];
  if (ls[0] != xs[0] || ls[1] != xs[1] || ls[2] != 2 * xs[2] || ls[3] != 2 * xs[3]) {
    return Fail("lateral must be (N, C, 2h, 2w) for x (N, C, h, w)");
  }
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

extern "C" int UpsampleAdd2xGrad(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                                 void *stream, void *extra) {
  (void)stream;
  (void)extra;
  if (nparam != 2 || !IsFloat4d(ndims[0], dtypes[0]) || !IsFloat4d(ndims[1], dtypes[1])) {
    return Fail("expects float32 dout (N, C, 2h, 2w) and one output (N, C, h, w)");
  }
  const int64_t *ds = shapes[0], *xs = shapes[1];
  if (ds[0] != xs[0] || ds[1] != xs[1] || ds[2] != 2 * xs[2] || ds[3] != 2 * xs[3]) {
    return Fail("dout must be (N, C, 2h, 2w) for dx (N, C, h, w)");
  }
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
