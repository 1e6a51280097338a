// Greedy NMS with MindSpore's NMSWithMask semantics (CPU kernel, MindSpore 2.7), computed lazily.
//
// NMSWithMask: order the N boxes with the same bitonic network (ascending over the next power of two, padding
// with +max, then read in reverse, i.e. by descending score, ties in that network's order); output the sorted
// rows, the indices 0..N-1 and a keep mask: box j is dropped iff a kept box i < j has
// inter / (area_i + area_j - inter) > threshold (areas without "+1", intersection clamped at 0 per side).
// MindSpore fills the whole N x N IoU matrix; here only the rows of kept boxes are computed (the others are
// never consulted), branch-free over the later boxes, which gives the same mask (same float expressions,
// IEEE division, -ffp-contract=off).
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <utility>
#include <vector>

#include "kernel_api.h"

namespace {

constexpr int kBoxCols = 5;  // x1, y1, x2, y2, score

int Fail(const char *what) { return kernel_api::Fail("nms", what); }

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

// Boxes as columns, so that the greedy pass runs over contiguous arrays (vectorised by the compiler).
struct Columns {
  std::vector<float> x1, y1, x2, y2, area;
  explicit Columns(const float *sorted, int n) : x1(n), y1(n), x2(n), y2(n), area(n) {
    for (int b = 0; b < n; ++b) {
      const float *row = sorted + static_cast<int64_t>(b) * kBoxCols;
      x1[b] = row[0];
      y1[b] = row[1];
      x2[b] = row[2];
      y2[b] = row[3];
      area[b] = (row[2] - row[0]) * (row[3] - row[1]);
    }
  }
};

// Clears keep[j] for every j in (i, n) that the kept box i suppresses, with NMSWithMask's float expression:
// suppressed iff inter / ((area_i + area_j) - inter) > threshold (a NaN ratio suppresses nothing).
void SuppressAfter(const Columns &c, int i, int n, float threshold, uint8_t *keep) {
  const float ax1 = c.x1[i], ay1 = c.y1[i], ax2 = c.x2[i], ay2 = c.y2[i], area_a = c.area[i];
  const float *x1 = c.x1.data(), *y1 = c.y1.data(), *x2 = c.x2.data(), *y2 = c.y2.data(), *area = c.area.data();
#pragma omp simd
  for (int j = i + 1; j < n; ++j) {
    const float width = std::max(std::min(ax2, x2[j]) - std::max(ax1, x1[j]), 0.0f);
    const float height = std::max(std::min(ay2, y2[j]) - std::max(ay1, y1[j]), 0.0f);
    const float inter = width * height;
    const float combined = area_a + area[j];
    const uint8_t suppressed = (inter / (combined - inter)) > threshold;
    keep[j] &= static_cast<uint8_t>(1 - suppressed);
  }
}

}  // namespace

// params: dets (N, 5) float32, threshold (1,) float32 -> sorted dets (N, 5) float32, index (N,) int32,
// keep (N,) bool.
AOT_KERNEL(NmsWithMask) {
  if (nparam != 5) return Fail("expects dets, threshold and three outputs");
  if (ndims[0] != 2 || shapes[0][1] != kBoxCols || !kernel_api::IsFloat32(dtypes[0])) {
    return Fail("dets must be float32 (N, 5)");
  }
  if (ndims[1] != 1 || shapes[1][0] != 1 || !kernel_api::IsFloat32(dtypes[1])) {
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
  }
  const Columns columns(sorted, n);
  std::vector<uint8_t> kept(n, 1);
  for (int i = 0; i + 1 < n; ++i) {
    if (kept[i]) SuppressAfter(columns, i, n, threshold, kept.data());
  }
  for (int b = 0; b < n; ++b) keep[b] = kept[b] != 0;
  return 0;
}
