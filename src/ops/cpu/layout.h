// Helpers shared by the kernels: scratch buffers and NCHW <-> NHWC copies (OpenMP-parallel, cache-blocked).
#ifndef SRC_CUSTOM_OPS_LAYOUT_H_
#define SRC_CUSTOM_OPS_LAYOUT_H_

#include <omp.h>
#if defined(__AVX__)
#include <immintrin.h>
#endif

#include <sys/mman.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <utility>
#include <vector>

namespace layout {

// Process-wide cache of scratch buffers. Kernels run once per layer and step with the same sizes; reusing the
// memory (2 MiB-aligned, transparent huge pages) spares page-faulting hundreds of MB of fresh pages per call.
// Keeps at most kMaxIdle idle buffers; an idle buffer is handed out for any request it can hold.
class ScratchCache {
 public:
  static ScratchCache &Instance() {
    static ScratchCache cache;
    return cache;
  }

  float *Acquire(size_t count, size_t *capacity) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto best = idle_.end();
      for (auto it = idle_.begin(); it != idle_.end(); ++it) {
        if (it->first >= count && (best == idle_.end() || it->first < best->first)) best = it;
      }
      if (best != idle_.end()) {
        float *data = best->second;
        *capacity = best->first;
        idle_.erase(best);
        return data;
      }
    }
    const size_t bytes = std::max<size_t>(count, 1) * sizeof(float);
    void *data = nullptr;
    if (posix_memalign(&data, kHugePage, bytes) != 0) return nullptr;
    if (bytes >= kHugePage) madvise(data, bytes, MADV_HUGEPAGE);
    *capacity = count;
    return static_cast<float *>(data);
  }

  void Release(float *data, size_t capacity) {
    std::lock_guard<std::mutex> lock(mutex_);
    idle_.emplace_back(capacity, data);
    if (idle_.size() > kMaxIdle) {  // drop the smallest
      auto smallest = std::min_element(idle_.begin(), idle_.end());
      std::free(smallest->second);
      idle_.erase(smallest);
    }
  }

 private:
  static constexpr size_t kHugePage = size_t{2} << 20;
  static constexpr size_t kMaxIdle = 4;
  std::mutex mutex_;
  std::vector<std::pair<size_t, float *>> idle_;
};

// Scratch memory from the cache, returned on scope exit. Uninitialised.
class Buffer {
 public:
  explicit Buffer(size_t count) : data_(ScratchCache::Instance().Acquire(count, &capacity_)) {}
  ~Buffer() {
    if (data_ != nullptr) ScratchCache::Instance().Release(data_, capacity_);
  }
  Buffer(const Buffer &) = delete;
  Buffer &operator=(const Buffer &) = delete;
  float *data() const { return data_; }
  bool ok() const { return data_ != nullptr; }

 private:
  size_t capacity_ = 0;
  float *data_;
};

#if defined(__AVX__)
// 8x8 transpose: dst[j * dst_stride + i] = src[i * src_stride + j], i, j < 8.
inline void Transpose8x8(const float *src, int64_t src_stride, float *dst, int64_t dst_stride) {
  __m256 r[8], t[8];
  for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + i * src_stride);
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    r[i] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
    r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
    r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
    r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int i = 0; i < 4; ++i) {
    _mm256_storeu_ps(dst + i * dst_stride, _mm256_permute2f128_ps(r[i], r[i + 4], 0x20));
    _mm256_storeu_ps(dst + (i + 4) * dst_stride, _mm256_permute2f128_ps(r[i], r[i + 4], 0x31));
  }
}
#endif

// One (rows, cols) matrix to (cols, rows): dst[j * dst_stride + i] = src[i * src_stride + j].
inline void TransposeMatrix(const float *src, int64_t src_stride, float *dst, int64_t dst_stride, int64_t rows,
                            int64_t cols) {
  constexpr int64_t kTile = 8;
  int64_t i0 = 0;
#if defined(__AVX__)
  for (; i0 + kTile <= rows; i0 += kTile) {
    int64_t j0 = 0;
    for (; j0 + kTile <= cols; j0 += kTile) {
      Transpose8x8(src + i0 * src_stride + j0, src_stride, dst + j0 * dst_stride + i0, dst_stride);
    }
    for (int64_t j = j0; j < cols; ++j) {
      for (int64_t i = i0; i < i0 + kTile; ++i) dst[j * dst_stride + i] = src[i * src_stride + j];
    }
  }
#endif
  for (int64_t i = i0; i < rows; ++i) {
    for (int64_t j = 0; j < cols; ++j) dst[j * dst_stride + i] = src[i * src_stride + j];
  }
}

constexpr int64_t kPixelBlock = 64;
constexpr int64_t kChannelBlock = 64;

// src (n, rows, cols) -> dst (n, cols, rows), blocked and parallel over (n, row blocks, column blocks).
inline void TransposeBatch(const float *src, float *dst, int64_t n, int64_t rows, int64_t cols) {
  const int64_t row_blocks = (rows + kChannelBlock - 1) / kChannelBlock;
  const int64_t col_blocks = (cols + kPixelBlock - 1) / kPixelBlock;
#pragma omp parallel for collapse(3) schedule(static)
  for (int64_t b = 0; b < n; ++b) {
    for (int64_t rb = 0; rb < row_blocks; ++rb) {
      for (int64_t cb = 0; cb < col_blocks; ++cb) {
        const int64_t i0 = rb * kChannelBlock, j0 = cb * kPixelBlock;
        TransposeMatrix(src + (b * rows + i0) * cols + j0, cols, dst + (b * cols + j0) * rows + i0, rows,
                        std::min(kChannelBlock, rows - i0), std::min(kPixelBlock, cols - j0));
      }
    }
  }
}

// src (n, c, hw) -> dst (n, hw, c).
inline void ToChannelsLast(const float *src, float *dst, int64_t n, int64_t c, int64_t hw) {
  TransposeBatch(src, dst, n, c, hw);
}

// src (n, hw, c) -> dst (n, c, hw).
inline void ToChannelsFirst(const float *src, float *dst, int64_t n, int64_t c, int64_t hw) {
  TransposeBatch(src, dst, n, hw, c);
}

// dst[0, count) = 0, in parallel.
inline void Zero(float *dst, int64_t count) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < count; ++i) dst[i] = 0.0f;
}

}  // namespace layout

#endif  // SRC_CUSTOM_OPS_LAYOUT_H_
