// 3x3 convolution, stride 1, zero padding 1 (NCHW, float32), by Winograd's minimal filtering F(4x4, 3x3).
//
// y[n, k] = sum_c x[n, c] (*) w[k, c] is computed tile by tile: each 4x4 output tile from the 6x6 input tile
// around it as  A^T [ sum_c (G w[k, c] G^T) . (B^T d[c] B) ] A  (Lavin & Gray 2016), i.e. 36 matrix products
// (K x C) @ (C x tiles) instead of 9 per output pixel: 4x fewer multiply-adds than the direct convolution. The
// products are oneDNN's sgemm (the library MindSpore's CPU convolution uses), one thread per block of tiles.
//
// WinogradConv3x3(x (N, C, H, W), w (K, C, 3, 3), b (K,)) -> y (N, K, H, W): the convolution plus the bias b[k].
// WinogradConv3x3Input(dy (N, K, H, W), w (K, C, 3, 3)) -> dx (N, C, H, W): its gradient with respect to x, the
//   same convolution with the kernel transposed and rotated by 180 degrees, w'[c, k, a, b] = w[k, c, 2 - a, 2 - b].
// WinogradConv3x3Filter(x (N, C, H, W), dy (N, K, H, W)) -> dw (K, C, 3, 3), db (K,): its gradients with respect to
//   b (dy summed over n, i, j) and to w, the
//   adjoint of the same tiles: dw[k, c] = G^T [ sum_tiles (A dy_tile A^T) . (B^T d_tile B) ] G, i.e. 36 products
//   (K x tiles) @ (tiles x C) summed over the tiles (per thread, then over the threads).
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "kernel_api.h"
#include "layout.h"

extern "C" int dnnl_sgemm(char transa, char transb, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                          int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc);

namespace {

constexpr int kTile = 4;             // output tile side
constexpr int kIn = kTile + 2;       // input tile side
constexpr int kPoints = kIn * kIn;   // 36 products per tile
constexpr int64_t kBlockTiles = 96;  // tiles per block: one block's transforms stay in the core's cache
// G of F(4x4, 3x3): a 3x3 filter g becomes the 6x6 G g G^T
constexpr float kG[kIn][3] = {{0.25f, 0.0f, 0.0f},
                              {-1.0f / 6, -1.0f / 6, -1.0f / 6},
                              {-1.0f / 6, 1.0f / 6, -1.0f / 6},
                              {1.0f / 24, 1.0f / 12, 1.0f / 6},
                              {1.0f / 24, -1.0f / 12, 1.0f / 6},
                              {0.0f, 0.0f, 1.0f}};

int Fail(const char *what) { return kernel_api::Fail("WinogradConv3x3", what); }

// U[p][k][c] = (G g G^T)[p] for g = w[k, c] (or w[c, k] rotated by 180 degrees when `transposed`).
void WeightTransform(const float *w, float *u, int64_t k_out, int64_t c_in, bool transposed) {
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t k = 0; k < k_out; ++k) {
    for (int64_t c = 0; c < c_in; ++c) {
      float g[3][3];
      for (int a = 0; a < 3; ++a) {
        for (int b = 0; b < 3; ++b) {
          g[a][b] = transposed ? w[((c * k_out + k) * 3 + (2 - a)) * 3 + (2 - b)] : w[((k * c_in + c) * 3 + a) * 3 + b];
        }
      }
      float gg[kIn][3];  // G g
      for (int i = 0; i < kIn; ++i) {
        for (int b = 0; b < 3; ++b) gg[i][b] = kG[i][0] * g[0][b] + kG[i][1] * g[1][b] + kG[i][2] * g[2][b];
      }
      for (int i = 0; i < kIn; ++i) {
        for (int j = 0; j < kIn; ++j) {
          u[((i * kIn + j) * k_out + k) * c_in + c] = gg[i][0] * kG[j][0] + gg[i][1] * kG[j][1] + gg[i][2] * kG[j][2];
        }
      }
    }
  }
}

struct Geometry {
  int64_t n, c, h, w, k;
  int64_t tiles_h, tiles_w;
};

// V[p][c][t] for the tiles t of one tile row segment (tile row ty, columns tx0 .. tx0 + count) of image n.
// v_stride: distance between consecutive c rows of V (the block's tile capacity); t_offset: first t written.
void TransformInputSegment(const float *x, const Geometry &g, int64_t n, int64_t ty, int64_t tx0, int64_t count,
                           float *v, int64_t v_stride, int64_t t_offset) {
  const int64_t width = kTile * count + 2;  // input columns the segment reads, from 4 * tx0 - 1
  float rows[kIn][kTile * kBlockTiles + 2];
  float cols[kIn][kTile * kBlockTiles + 2];
  const int64_t x0 = kTile * tx0 - 1, y0 = kTile * ty - 1;
  for (int64_t c = 0; c < g.c; ++c) {
    const float *plane = x + (n * g.c + c) * g.h * g.w;
    for (int i = 0; i < kIn; ++i) {
      const int64_t y = y0 + i;
      float *row = rows[i];
      if (y < 0 || y >= g.h) {
        std::fill(row, row + width, 0.0f);
        continue;
      }
      const float *src = plane + y * g.w;
      const int64_t lo = std::max<int64_t>(0, -x0), hi = std::min<int64_t>(width, g.w - x0);
      std::fill(row, row + lo, 0.0f);
      std::memcpy(row + lo, src + x0 + lo, sizeof(float) * (hi - lo));
      std::fill(row + std::max(hi, lo), row + width, 0.0f);
    }
    // B^T along the rows, vectorised over the columns.
#pragma omp simd
    for (int64_t u = 0; u < width; ++u) {
      const float d0 = rows[0][u], d1 = rows[1][u], d2 = rows[2][u], d3 = rows[3][u], d4 = rows[4][u],
                  d5 = rows[5][u];
      cols[0][u] = 4.0f * d0 - 5.0f * d2 + d4;
      cols[1][u] = -4.0f * d1 - 4.0f * d2 + d3 + d4;
      cols[2][u] = 4.0f * d1 - 4.0f * d2 - d3 + d4;
      cols[3][u] = -2.0f * d1 - d2 + 2.0f * d3 + d4;
      cols[4][u] = 2.0f * d1 - d2 - 2.0f * d3 + d4;
      cols[5][u] = 4.0f * d1 - 5.0f * d3 + d5;
    }
    // B along the columns of each tile: V[i * 6 + j][c][t].
    for (int i = 0; i < kIn; ++i) {
      const float *r = cols[i];
      float *out = v + (i * kIn * g.c + c) * v_stride + t_offset;
      const int64_t ps = g.c * v_stride;  // distance between V[i * 6 + j] and V[i * 6 + j + 1]
#pragma omp simd
      for (int64_t t = 0; t < count; ++t) {
        const float d0 = r[4 * t], d1 = r[4 * t + 1], d2 = r[4 * t + 2], d3 = r[4 * t + 3], d4 = r[4 * t + 4],
                    d5 = r[4 * t + 5];
        out[t] = 4.0f * d0 - 5.0f * d2 + d4;
        out[ps + t] = -4.0f * d1 - 4.0f * d2 + d3 + d4;
        out[2 * ps + t] = 4.0f * d1 - 4.0f * d2 - d3 + d4;
        out[3 * ps + t] = -2.0f * d1 - d2 + 2.0f * d3 + d4;
        out[4 * ps + t] = 2.0f * d1 - d2 - 2.0f * d3 + d4;
        out[5 * ps + t] = 4.0f * d1 - 5.0f * d3 + d5;
      }
    }
  }
}

// y[n, k, 4 ty + a, 4 (tx0 + t) + b] = (A^T M A)[a][b] for the tiles of one segment; M[p][k][t_offset + t].
void TransformOutputSegment(const float *m, const float *bias, const Geometry &g, int64_t n, int64_t ty,
                            int64_t tx0, int64_t count, int64_t m_stride, int64_t t_offset, float *y) {
  float s[kIn][kTile][kBlockTiles];  // A^T along the columns of each tile: s[i][b][t]
  float o[kTile][kTile][kBlockTiles];
  const int64_t rows = std::min<int64_t>(kTile, g.h - kTile * ty);
  for (int64_t k = 0; k < g.k; ++k) {
    for (int i = 0; i < kIn; ++i) {
      const float *mp = m + (i * kIn * g.k + k) * m_stride + t_offset;
      const int64_t ps = g.k * m_stride;
#pragma omp simd
      for (int64_t t = 0; t < count; ++t) {
        const float m0 = mp[t], m1 = mp[ps + t], m2 = mp[2 * ps + t], m3 = mp[3 * ps + t], m4 = mp[4 * ps + t],
                    m5 = mp[5 * ps + t];
        s[i][0][t] = m0 + m1 + m2 + m3 + m4;
        s[i][1][t] = m1 - m2 + 2.0f * (m3 - m4);
        s[i][2][t] = m1 + m2 + 4.0f * (m3 + m4);
        s[i][3][t] = m1 - m2 + 8.0f * (m3 - m4) + m5;
      }
    }
    for (int b = 0; b < kTile; ++b) {
#pragma omp simd
      for (int64_t t = 0; t < count; ++t) {
        const float m0 = s[0][b][t], m1 = s[1][b][t], m2 = s[2][b][t], m3 = s[3][b][t], m4 = s[4][b][t],
                    m5 = s[5][b][t];
        o[0][b][t] = m0 + m1 + m2 + m3 + m4;
        o[1][b][t] = m1 - m2 + 2.0f * (m3 - m4);
        o[2][b][t] = m1 + m2 + 4.0f * (m3 + m4);
        o[3][b][t] = m1 - m2 + 8.0f * (m3 - m4) + m5;
      }
    }
    float *plane = y + (n * g.k + k) * g.h * g.w;
    const float shift = bias == nullptr ? 0.0f : bias[k];
    const int64_t x_begin = kTile * tx0, x_end = std::min<int64_t>(g.w, kTile * (tx0 + count));
    for (int64_t a = 0; a < rows; ++a) {
      float *row = plane + (kTile * ty + a) * g.w;
      for (int64_t xx = x_begin; xx < x_end; ++xx) {
        const int64_t t = (xx - x_begin) / kTile, b = (xx - x_begin) % kTile;
        row[xx] = o[a][b][t] + shift;
      }
    }
  }
}

// Runs body(v, e, thread, n, ty, tx0, count) for every block of the map, a segment of `count` <= kBlockTiles tiles
// (tx0, tx0 + 1, ...) of tile row ty of image n, on a team of `threads` threads (dynamic schedule, one block at a
// time). v (kPoints x C x kBlockTiles) and e (kPoints x K x kBlockTiles) are the calling thread's scratch;
// begin(thread, team size) runs once in every thread first. Returns false when a scratch buffer could not be had.
template <typename Begin, typename Body>
bool ForEachSegment(const Geometry &g, int threads, Begin begin, Body body) {
  const int64_t segments_per_row = (g.tiles_w + kBlockTiles - 1) / kBlockTiles;
  const int64_t blocks = g.n * g.tiles_h * segments_per_row;
  int failed = 0;
#pragma omp parallel num_threads(threads)
  {
    const int thread = omp_get_thread_num();
    begin(thread, omp_get_num_threads());
    layout::Buffer v(static_cast<size_t>(kPoints * g.c * kBlockTiles));
    layout::Buffer e(static_cast<size_t>(kPoints * g.k * kBlockTiles));
    if (!v.ok() || !e.ok()) {
#pragma omp atomic write
      failed = 1;
    }
#pragma omp for schedule(dynamic, 1)
    for (int64_t b = 0; b < blocks; ++b) {
      if (failed) continue;
      const int64_t n = b / (g.tiles_h * segments_per_row);
      const int64_t ty = (b / segments_per_row) % g.tiles_h;
      const int64_t tx0 = (b % segments_per_row) * kBlockTiles;
      body(v.data(), e.data(), thread, n, ty, tx0, std::min(kBlockTiles, g.tiles_w - tx0));
    }
  }
  return !failed;
}

int Convolve(const float *x, const float *w, const float *bias, float *y, const Geometry &g, bool transposed_weight) {
  layout::Buffer u(static_cast<size_t>(kPoints * g.k * g.c));
  if (!u.ok()) return Fail("out of memory");
  WeightTransform(w, u.data(), g.k, g.c, transposed_weight);
  const bool done = ForEachSegment(
      g, omp_get_max_threads(), [](int, int) {},
      [&](float *v, float *m, int, int64_t n, int64_t ty, int64_t tx0, int64_t count) {
        TransformInputSegment(x, g, n, ty, tx0, count, v, kBlockTiles, 0);
        for (int p = 0; p < kPoints; ++p) {
          dnnl_sgemm('N', 'N', g.k, count, g.c, 1.0f, u.data() + p * g.k * g.c, g.c, v + p * g.c * kBlockTiles,
                     kBlockTiles, 0.0f, m + p * g.k * kBlockTiles, kBlockTiles);
        }
        TransformOutputSegment(m, bias, g, n, ty, tx0, count, kBlockTiles, 0, y);
      });
  return done ? 0 : Fail("out of memory");
}

// D[p][k][t] = (A dy_tile A^T)[p] for the tiles of one segment (outputs beyond the map count as zero).
// Also adds the segment's dy values of channel k to db[k].
void TransformGradSegment(const float *dy, const Geometry &g, int64_t n, int64_t ty, int64_t tx0, int64_t count,
                          float *d, int64_t d_stride, float *db) {
  float rows[kTile][kTile * kBlockTiles];
  float cols[kIn][kTile * kBlockTiles];
  const int64_t width = kTile * count, x0 = kTile * tx0;
  const int64_t valid = std::max<int64_t>(0, std::min<int64_t>(width, g.w - x0));
  for (int64_t k = 0; k < g.k; ++k) {
    const float *plane = dy + (n * g.k + k) * g.h * g.w;
    for (int a = 0; a < kTile; ++a) {
      const int64_t y = kTile * ty + a;
      float *row = rows[a];
      if (y >= g.h) {
        std::fill(row, row + width, 0.0f);
        continue;
      }
      std::memcpy(row, plane + y * g.w + x0, sizeof(float) * valid);
      std::fill(row + valid, row + width, 0.0f);
    }
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int64_t u = 0; u < width; ++u) {
      const float e0 = rows[0][u], e1 = rows[1][u], e2 = rows[2][u], e3 = rows[3][u];
      sum += (e0 + e1) + (e2 + e3);
      cols[0][u] = e0;
      cols[1][u] = e0 + e1 + e2 + e3;
      cols[2][u] = e0 - e1 + e2 - e3;
      cols[3][u] = e0 + 2.0f * e1 + 4.0f * e2 + 8.0f * e3;
      cols[4][u] = e0 - 2.0f * e1 + 4.0f * e2 - 8.0f * e3;
      cols[5][u] = e3;
    }
    db[k] += sum;
    for (int i = 0; i < kIn; ++i) {
      const float *r = cols[i];
      float *out = d + (i * kIn * g.k + k) * d_stride;
      const int64_t ps = g.k * d_stride;
#pragma omp simd
      for (int64_t t = 0; t < count; ++t) {
        const float e0 = r[4 * t], e1 = r[4 * t + 1], e2 = r[4 * t + 2], e3 = r[4 * t + 3];
        out[t] = e0;
        out[ps + t] = e0 + e1 + e2 + e3;
        out[2 * ps + t] = e0 - e1 + e2 - e3;
        out[3 * ps + t] = e0 + 2.0f * e1 + 4.0f * e2 + 8.0f * e3;
        out[4 * ps + t] = e0 - 2.0f * e1 + 4.0f * e2 - 8.0f * e3;
        out[5 * ps + t] = e3;
      }
    }
  }
}

int FilterGradient(const float *x, const float *dy, float *dw, float *db, const Geometry &g) {
  const int64_t z_size = kPoints * g.k * g.c + g.k;  // Z[p][k][c], then the thread's db[k]
  const int max_threads = omp_get_max_threads();
  layout::Buffer z(static_cast<size_t>(z_size * max_threads));  // per thread: Z[p][k][c]
  if (!z.ok()) return Fail("out of memory");
  int threads = 1;
  const bool done = ForEachSegment(
      g, max_threads,
      [&](int thread, int team) {
        if (thread == 0) threads = team;
        std::fill(z.data() + thread * z_size, z.data() + (thread + 1) * z_size, 0.0f);
      },
      [&](float *v, float *d, int thread, int64_t n, int64_t ty, int64_t tx0, int64_t count) {
        float *zt = z.data() + thread * z_size;
        TransformInputSegment(x, g, n, ty, tx0, count, v, kBlockTiles, 0);
        TransformGradSegment(dy, g, n, ty, tx0, count, d, kBlockTiles, zt + kPoints * g.k * g.c);
        for (int p = 0; p < kPoints; ++p) {
          dnnl_sgemm('N', 'T', g.k, g.c, count, 1.0f, d + p * g.k * kBlockTiles, kBlockTiles, v + p * g.c * kBlockTiles,
                     kBlockTiles, 1.0f, zt + p * g.k * g.c, g.c);
        }
      });
  if (!done) return Fail("out of memory");
  const float *zs = z.data();
  for (int64_t k = 0; k < g.k; ++k) {
    float sum = 0.0f;
    for (int th = 0; th < threads; ++th) sum += zs[th * z_size + kPoints * g.k * g.c + k];
    db[k] = sum;
  }
#pragma omp parallel for schedule(static)
  for (int64_t kc = 0; kc < g.k * g.c; ++kc) {
    float zz[kPoints];
    for (int p = 0; p < kPoints; ++p) {
      float sum = 0.0f;
      for (int th = 0; th < threads; ++th) sum += zs[th * z_size + p * g.k * g.c + kc];
      zz[p] = sum;
    }
    float gz[3][kIn];  // G^T Z
    for (int a = 0; a < 3; ++a) {
      for (int j = 0; j < kIn; ++j) {
        float sum = 0.0f;
        for (int i = 0; i < kIn; ++i) sum += kG[i][a] * zz[i * kIn + j];
        gz[a][j] = sum;
      }
    }
    for (int a = 0; a < 3; ++a) {
      for (int bb = 0; bb < 3; ++bb) {
        float sum = 0.0f;
        for (int j = 0; j < kIn; ++j) sum += gz[a][j] * kG[j][bb];
        dw[kc * 9 + a * 3 + bb] = sum;
      }
    }
  }
  return 0;
}

// params: x (N, C, H, W), w, [b (K,)], y. The input gradient has no bias input.
int Run(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, bool transposed_weight) {
  const int inputs = transposed_weight ? 2 : 3;
  if (nparam != inputs + 1) return Fail(transposed_weight ? "expects dy, w and one output" : "expects x, w, b and one output");
  for (int i = 0; i <= inputs; ++i) {
    const int rank = (!transposed_weight && i == 2) ? 1 : 4;
    if (ndims[i] != rank || !kernel_api::IsFloat32(dtypes[i])) return Fail("inputs must be float32");
  }
  const int64_t *xs = shapes[0], *ws = shapes[1];
  const int64_t k_out = transposed_weight ? ws[1] : ws[0], c_in = transposed_weight ? ws[0] : ws[1];
  if (ws[2] != 3 || ws[3] != 3 || xs[1] != c_in) return Fail("w must be (K, C, 3, 3) for x (N, C, H, W)");
  if (!transposed_weight && shapes[2][0] != k_out) return Fail("b must be (K,)");
  Geometry g{xs[0], xs[1], xs[2], xs[3], k_out, (xs[2] + kTile - 1) / kTile, (xs[3] + kTile - 1) / kTile};
  return Convolve(static_cast<const float *>(params[0]), static_cast<const float *>(params[1]),
                  transposed_weight ? nullptr : static_cast<const float *>(params[2]),
                  static_cast<float *>(params[inputs]), g, transposed_weight);
}

}  // namespace

AOT_KERNEL(WinogradConv3x3) {
  return Run(nparam, params, ndims, shapes, dtypes, false);
}

AOT_KERNEL(WinogradConv3x3Filter) {
  if (nparam != 4) return Fail("expects x, dy and two outputs");
  for (int i = 0; i < 4; ++i) {
    if (ndims[i] != (i == 3 ? 1 : 4) || !kernel_api::IsFloat32(dtypes[i])) return Fail("inputs must be float32");
  }
  const int64_t *xs = shapes[0], *ds = shapes[1];
  if (ds[0] != xs[0] || ds[2] != xs[2] || ds[3] != xs[3]) return Fail("dy must be (N, K, H, W) for x (N, C, H, W)");
  Geometry g{xs[0], xs[1], xs[2], xs[3], ds[1], (xs[2] + kTile - 1) / kTile, (xs[3] + kTile - 1) / kTile};
  return FilterGradient(static_cast<const float *>(params[0]), static_cast<const float *>(params[1]),
                        static_cast<float *>(params[2]), static_cast<float *>(params[3]), g);
}

AOT_KERNEL(WinogradConv3x3Input) {
  return Run(nparam, params, ndims, shapes, dtypes, true);
}
