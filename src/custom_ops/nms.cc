// Greedy NMS with MindSpore's NMSWithMask semantics (CPU kernel, MindSpore 2.7), computed lazily.
//
// NMSWithMask: order the N boxes with the same bitonic network (ascending over the next power of two, padding
// with +max, then read in reverse, i.e. by descending score, ties in that network's order); output the sorted
// rows, the indices 0..N-1 and a keep mask: box j is dropped iff a kept box i < j has
// inter / (area_i + area_j - inter) > threshold (areas without "+1", intersection clamped at 0 per side).
// MindSpore fills the whole N x N IoU matrix; here an IoU is computed only for a kept i and a j not yet
// dropped, which gives the same mask (the float expressions are the same, -ffp-contract=off).
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <utility>
#include <vector>

namespace {

constexpr int kBoxCols = 5;  // x1, y1, x2, y2, score

int Fail(const char *what) {
  std::fprintf(stderr, "[nms] %s\n", what);
  return 1;
}

// Descending-score order of the N rows, as NMSWithMask's bitonic sort produces it.
std::vector<int> BitonicOrder(const float *dets, int n) {
  size_t size = 1;
  while (size < static_cast<size_t>(n)) size <<= 1;
  std::vector<float> key(size);
  std::vector<int> index(size);
  for (size_t i = 0; i < size; ++i) {
    key[i] = i < static_cast<size_t>(n) ? dets[i * kBoxCols + 4] : std::numeric_limits<float>::max();
    index[i] = static_cast<int>(i);
  }
  for (size_t i = 2; i <= size; i <<= 1) {
    for (size_t j = i >> 1; j > 0; j >>= 1) {
      for (size_t t = 0; t < size; ++t) {
        const size_t other = t ^ j;
        if (other <= t) continue;
        const bool swap = (t & i) == 0 ? key[t] > key[other] : key[t] < key[other];
        if (swap) {
          std::swap(key[t], key[other]);
          std::swap(index[t], index[other]);
        }
      }
    }
  }
  std::vector<int> order(n);
  for (int b = 0; b < n; ++b) order[b] = index[n - 1 - b];
  return order;
}

// NMSWithMask's decision: true when box b may stay next to the kept box a.
inline bool Compatible(const float *a, const float *b, float threshold) {
  const float x1 = std::max(a[0], b[0]);
  const float y1 = std::max(a[1], b[1]);
  const float x2 = std::min(a[2], b[2]);
  const float y2 = std::min(a[3], b[3]);
  const float width = std::max(x2 - x1, 0.0f);
  const float height = std::max(y2 - y1, 0.0f);
  const float area_a = (a[2] - a[0]) * (a[3] - a[1]);
  const float area_b = (b[2] - b[0]) * (b[3] - b[1]);
  const float combined = area_a + area_b;
  return !(((width * height) / (combined - (width * height))) > threshold);
}

}  // namespace

// params: dets (N, 5) float32, threshold (1,) float32 -> sorted dets (N, 5) float32, index (N,) int32,
// keep (N,) bool.
extern "C" int NmsWithMask(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                           void *stream, void *extra) {
  (void)stream;
  (void)extra;
  if (nparam != 5) return Fail("expects dets, threshold and three outputs");
  if (ndims[0] != 2 || shapes[0][1] != kBoxCols || std::strcmp(dtypes[0], "float32") != 0) {
    return Fail("dets must be float32 (N, 5)");
  }
  if (ndims[1] != 1 || shapes[1][0] != 1 || std::strcmp(dtypes[1], "float32") != 0) {
    return Fail("threshold must be float32 (1,)");
  }
  const int n = static_cast<int>(shapes[0][0]);
  const auto *dets = static_cast<const float *>(params[0]);
  const float threshold = *static_cast<const float *>(params[1]);
  auto *sorted = static_cast<float *>(params[2]);
  auto *index = static_cast<int32_t *>(params[3]);
  auto *keep = static_cast<bool *>(params[4]);

  const std::vector<int> order = BitonicOrder(dets, n);
  for (int b = 0; b < n; ++b) {
    std::memcpy(sorted + static_cast<int64_t>(b) * kBoxCols, dets + static_cast<int64_t>(order[b]) * kBoxCols,
                kBoxCols * sizeof(float));
    index[b] = b;  // NMSWithMask returns the positions in the sorted output, not the input rows
    keep[b] = true;
  }
  for (int i = 0; i + 1 < n; ++i) {
    if (!keep[i]) continue;
    const float *a = sorted + static_cast<int64_t>(i) * kBoxCols;
    for (int j = i + 1; j < n; ++j) {
      if (keep[j] && !Compatible(a, sorted + static_cast<int64_t>(j) * kBoxCols, threshold)) keep[j] = false;
    }
  }
  return 0;
}
