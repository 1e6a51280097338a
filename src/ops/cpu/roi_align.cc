// Multi-level RoIAlign for FPN features: each RoI is pooled on the one level its size selects.
//
// Numerically the original model's SingleRoIExtractor on MindSpore's CPU ROIAlign kernel (roi_end_mode 1):
// the original pools every RoI on every level and keeps one result; this computes only the kept one.
// Entry points follow MindSpore's "aot" Custom-op calling convention (inputs, then outputs, in `params`).
//
//   RoiAlignMultiLevel:     rois (R, 5) [batch, x1, y1, x2, y2], config (3 + L,), feat_0..feat_{L-1} (B, C, H_l, W_l)
//                           -> out (R, C, PH, PW)
//   RoiAlignMultiLevelGrad: rois, config, dout (R, C, PH, PW), feat_0..feat_{L-1} (read for their shapes only)
//                           -> dfeat_0..dfeat_{L-1}, each the shape of its feat
//   config = [finest_scale, sample_num, roi_end_mode, spatial_scale_0, ..., spatial_scale_{L-1}] (float32)
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "kernel_api.h"
#include "layout.h"

namespace {

constexpr int kRoiCols = 5;
constexpr int kConfigHead = 3;         // finest_scale, sample_num, roi_end_mode
constexpr float kLevelEps = 1e-6f;     // added to scale / finest_scale before log2 (the original's formula)
constexpr float kSkipTol = 0.001f;     // RoIs with |x1| and |x2| below this are skipped (MindSpore's kernel rule)
constexpr float kIndexEps = 0.00007f;  // MindSpore's epsilon for the batch index and the low corner

struct Config {
  float finest_scale;
  int sample_num;
  int roi_end_mode;
  std::vector<float> spatial_scales;
};

struct Level {
  int height;
  int width;
};

// Where one RoI is pooled and its bin grid, in the same float arithmetic as MindSpore's kernel.
struct RoiGeometry {
  bool skip;
  int level;
  int batch;
  float start_h, start_w, bin_h, bin_w;
  int grid_h, grid_w;
};

// One bilinear sample point: four corner offsets into a (H, W) plane and their weights.
struct Tap {
  bool valid;
  int32_t idx[4];  // (low row, low col), (low row, high col), (high row, low col), (high row, high col)
  float w[4];
};

int RoiLevel(const float *roi, float finest_scale, int num_levels) {
  const float scale = std::sqrt(roi[3] - roi[1] + 1.0f) * std::sqrt(roi[4] - roi[2] + 1.0f);
  const float level = std::floor(std::log(scale / finest_scale + kLevelEps) / std::log(2.0f));
  if (!std::isfinite(level) || level < 0.0f) return 0;  // float->int32 casts of NaN/inf give INT_MIN on x86
  return std::min(static_cast<int>(level), num_levels - 1);
}

RoiGeometry Geometry(const float *roi, const Config &cfg, int pooled_h, int pooled_w) {
  RoiGeometry g{};
  // MindSpore's kernel tests columns 1 and 3 of the (batch, x1, y1, x2, y2) row, i.e. x1 and x2. It leaves the
  // output of such a RoI unwritten (whatever the memory held); here it is zero.
  g.skip = roi[1] < kSkipTol && roi[3] < kSkipTol && roi[1] > -kSkipTol && roi[3] > -kSkipTol;
  g.level = RoiLevel(roi, cfg.finest_scale, static_cast<int>(cfg.spatial_scales.size()));
  g.batch = static_cast<int>(std::rint(roi[0] + kIndexEps));
  const float scale = cfg.spatial_scales[g.level];
  g.start_w = roi[1] * scale;
  g.start_h = roi[2] * scale;
  const float end_w = (roi[3] + static_cast<float>(cfg.roi_end_mode)) * scale;
  const float end_h = (roi[4] + static_cast<float>(cfg.roi_end_mode)) * scale;
  float roi_w = end_w - g.start_w;
  float roi_h = end_h - g.start_h;
  if (cfg.roi_end_mode == 0) {
    roi_w = std::max(roi_w, 1.0f);
    roi_h = std::max(roi_h, 1.0f);
  }
  g.bin_h = roi_h / static_cast<float>(pooled_h);
  g.bin_w = roi_w / static_cast<float>(pooled_w);
  g.grid_h = cfg.sample_num > 0 ? cfg.sample_num : static_cast<int>(std::floor(roi_h / static_cast<float>(pooled_h)));
  g.grid_w = cfg.sample_num > 0 ? cfg.sample_num : static_cast<int>(std::floor(roi_w / static_cast<float>(pooled_w)));
  g.grid_h = std::max(g.grid_h, 0);
  g.grid_w = std::max(g.grid_w, 0);
  return g;
}

// MindSpore's bilinear rule: points outside [-1, H] x [-1, W] (or NaN) contribute nothing; negative
// coordinates clamp to 0; at the last row/column both corners coincide.
Tap MakeTap(int height, int width, float y, float x) {
  Tap t{};
  if (!(y >= -1.0f && y <= static_cast<float>(height) && x >= -1.0f && x <= static_cast<float>(width))) {
    t.valid = false;
    return t;
  }
  y = y <= 0.0f ? 0.0f : y;
  x = x <= 0.0f ? 0.0f : x;
  int y_low = y <= kIndexEps ? 0 : static_cast<int>(std::floor(y));
  int x_low = x <= kIndexEps ? 0 : static_cast<int>(std::floor(x));
  int y_high;
  int x_high;
  if (y_low >= height - 1) {
    y_high = y_low = height - 1;
    y = static_cast<float>(y_low);
  } else {
    y_high = y_low + 1;
  }
  if (x_low >= width - 1) {
    x_high = x_low = width - 1;
    x = static_cast<float>(x_low);
  } else {
    x_high = x_low + 1;
  }
  const float ly = y - static_cast<float>(y_low);
  const float lx = x - static_cast<float>(x_low);
  const float hy = 1.0f - ly;
  const float hx = 1.0f - lx;
  t.valid = true;
  t.idx[0] = y_low * width + x_low;
  t.idx[1] = y_low * width + x_high;
  t.idx[2] = y_high * width + x_low;
  t.idx[3] = y_high * width + x_high;
  t.w[0] = hy * hx;
  t.w[1] = hy * lx;
  t.w[2] = ly * hx;
  t.w[3] = ly * lx;
  return t;
}

// All sample taps of one RoI, bin-major: taps[(bin * grid_h + iy) * grid_w + ix].
void MakeTaps(const RoiGeometry &g, const Level &lv, int pooled_h, int pooled_w, std::vector<Tap> *taps) {
  taps->resize(static_cast<size_t>(pooled_h) * pooled_w * g.grid_h * g.grid_w);
  size_t k = 0;
  for (int ph = 0; ph < pooled_h; ++ph) {
    for (int pw = 0; pw < pooled_w; ++pw) {
      for (int iy = 0; iy < g.grid_h; ++iy) {
        const float y = g.start_h + static_cast<float>(ph) * g.bin_h +
                        static_cast<float>(iy + .5f) * g.bin_h / static_cast<float>(g.grid_h);
        for (int ix = 0; ix < g.grid_w; ++ix) {
          const float x = g.start_w + static_cast<float>(pw) * g.bin_w +
                          static_cast<float>(ix + .5f) * g.bin_w / static_cast<float>(g.grid_w);
          (*taps)[k++] = MakeTap(lv.height, lv.width, y, x);
        }
      }
    }
  }
}

using kernel_api::IsFloat32;

int Fail(const char *what) { return kernel_api::Fail("roi_align_multilevel", what); }

// Shapes shared by forward and backward; returns an error message or nullptr.
struct Problem {
  int64_t num_rois, batch, channels;
  int pooled_h, pooled_w;
  std::vector<Level> levels;
  Config cfg;
};

const char *ReadProblem(int num_levels, const float *rois, const float *config, int *ndims, int64_t **shapes,
                        const char **dtypes, int feat_pos, int pooled_pos, Problem *p) {
  if (num_levels < 1) return "needs at least one feature level";
  if (ndims[0] != 2 || shapes[0][1] != kRoiCols || !IsFloat32(dtypes[0])) return "rois must be float32 (R, 5)";
  if (ndims[1] != 1 || shapes[1][0] != kConfigHead + num_levels || !IsFloat32(dtypes[1])) {
    return "config must be float32 (3 + number of levels,)";
  }
  p->num_rois = shapes[0][0];
  p->cfg.finest_scale = config[0];
  p->cfg.sample_num = static_cast<int>(config[1]);
  p->cfg.roi_end_mode = static_cast<int>(config[2]);
  p->cfg.spatial_scales.assign(config + kConfigHead, config + kConfigHead + num_levels);
  for (int l = 0; l < num_levels; ++l) {
    const int i = feat_pos + l;
    if (ndims[i] != 4 || !IsFloat32(dtypes[i])) return "feature maps must be float32 (B, C, H, W)";
    if (l == 0) {
      p->batch = shapes[i][0];
      p->channels = shapes[i][1];
    } else if (shapes[i][0] != p->batch || shapes[i][1] != p->channels) {
      return "feature maps must share batch and channel sizes";
    }
    p->levels.push_back({static_cast<int>(shapes[i][2]), static_cast<int>(shapes[i][3])});
  }
  if (ndims[pooled_pos] != 4 || shapes[pooled_pos][0] != p->num_rois || shapes[pooled_pos][1] != p->channels ||
      !IsFloat32(dtypes[pooled_pos])) {
    return "pooled tensor must be float32 (R, C, PH, PW)";
  }
  p->pooled_h = static_cast<int>(shapes[pooled_pos][2]);
  p->pooled_w = static_cast<int>(shapes[pooled_pos][3]);
  for (int64_t r = 0; r < p->num_rois; ++r) {
    const float b = rois[r * kRoiCols];
    if (!(b >= 0.0f && b <= static_cast<float>(p->batch - 1))) return "a RoI's batch index is outside [0, B-1]";
  }
  return nullptr;
}

// Channel-last copies of the feature maps, one per level: (B, H_l, W_l, C).
struct ChannelsLastMaps {
  std::vector<float *> level;
  layout::Buffer storage;
  explicit ChannelsLastMaps(const Problem &p) : storage(TotalSize(p)) {
    int64_t at = 0;
    for (const Level &lv : p.levels) {
      level.push_back(storage.data() + at);
      at += p.batch * p.channels * lv.height * lv.width;
    }
  }
  static size_t TotalSize(const Problem &p) {
    int64_t total = 0;
    for (const Level &lv : p.levels) total += p.batch * p.channels * lv.height * lv.width;
    return static_cast<size_t>(total);
  }
};

}  // namespace

AOT_KERNEL(RoiAlignMultiLevel) {
  const int num_levels = nparam - 3;
  const auto *rois = static_cast<const float *>(params[0]);
  const auto *config = static_cast<const float *>(params[1]);
  auto *out = static_cast<float *>(params[nparam - 1]);
  Problem p;
  if (const char *err = ReadProblem(num_levels, rois, config, ndims, shapes, dtypes, 2, nparam - 1, &p)) {
    return Fail(err);
  }
  ChannelsLastMaps maps(p);
  if (!maps.storage.ok()) return Fail("out of memory");
  for (int l = 0; l < num_levels; ++l) {
    layout::ToChannelsLast(static_cast<const float *>(params[2 + l]), maps.level[l], p.batch, p.channels,
                           static_cast<int64_t>(p.levels[l].height) * p.levels[l].width);
  }
  const int64_t bins = static_cast<int64_t>(p.pooled_h) * p.pooled_w;
  const int64_t channels = p.channels;

#pragma omp parallel
  {
    std::vector<Tap> taps;
    std::vector<float> acc(static_cast<size_t>(bins * channels));  // (bin, channel) sums of one RoI
#pragma omp for schedule(dynamic, 4)
    for (int64_t r = 0; r < p.num_rois; ++r) {
      const float *roi = rois + r * kRoiCols;
      float *out_r = out + r * channels * bins;
      const RoiGeometry g = Geometry(roi, p.cfg, p.pooled_h, p.pooled_w);
      if (g.skip) {
        std::fill(out_r, out_r + channels * bins, 0.0f);
        continue;
      }
      const Level &lv = p.levels[g.level];
      MakeTaps(g, lv, p.pooled_h, p.pooled_w, &taps);
      const int per_bin = g.grid_h * g.grid_w;
      const float count = static_cast<float>(g.grid_h) * static_cast<float>(g.grid_w);
      const float *feat = maps.level[g.level] + g.batch * static_cast<int64_t>(lv.height) * lv.width * channels;
      for (int64_t bin = 0; bin < bins; ++bin) {
        float *a = acc.data() + bin * channels;
        std::fill(a, a + channels, 0.0f);
        for (int s = 0; s < per_bin; ++s) {
          const Tap &t = taps[bin * per_bin + s];
          if (!t.valid) continue;
          const float *v0 = feat + t.idx[0] * channels, *v1 = feat + t.idx[1] * channels;
          const float *v2 = feat + t.idx[2] * channels, *v3 = feat + t.idx[3] * channels;
#pragma omp simd
          for (int64_t c = 0; c < channels; ++c) {
            a[c] += t.w[0] * v0[c] + t.w[1] * v1[c] + t.w[2] * v2[c] + t.w[3] * v3[c];
          }
        }
      }
      for (int64_t c = 0; c < channels; ++c) {
        for (int64_t bin = 0; bin < bins; ++bin) out_r[c * bins + bin] = acc[bin * channels + c] / count;
      }
    }
  }
  return 0;
}

AOT_KERNEL(RoiAlignMultiLevelGrad) {
  if ((nparam - 3) % 2 != 0) return Fail("gradient op expects rois, config, dout, L maps and L outputs");
  const int num_levels = (nparam - 3) / 2;
  const auto *rois = static_cast<const float *>(params[0]);
  const auto *config = static_cast<const float *>(params[1]);
  const auto *dout = static_cast<const float *>(params[2]);
  Problem p;
  if (const char *err = ReadProblem(num_levels, rois, config, ndims, shapes, dtypes, 3, 2, &p)) return Fail(err);
  for (int l = 0; l < num_levels; ++l) {
    const int i = 3 + num_levels + l;
    if (ndims[i] != 4 || !IsFloat32(dtypes[i]) || !std::equal(shapes[i], shapes[i] + 4, shapes[3 + l])) {
      return Fail("each gradient must have its feature map's shape and dtype");
    }
  }
  ChannelsLastMaps grads(p);  // channel-last gradient accumulators
  if (!grads.storage.ok()) return Fail("out of memory");
  layout::Zero(grads.storage.data(), static_cast<int64_t>(ChannelsLastMaps::TotalSize(p)));
  const int64_t bins = static_cast<int64_t>(p.pooled_h) * p.pooled_w;
  const int64_t channels = p.channels;

#pragma omp parallel
  {
    // Every thread owns a contiguous range of channels of every level: race-free scatter-add.
    const int nthreads = omp_get_num_threads();
    const int tid = omp_get_thread_num();
    const int64_t c0 = channels * tid / nthreads;
    const int64_t c1 = channels * (tid + 1) / nthreads;
    std::vector<Tap> taps;
    std::vector<float> top(static_cast<size_t>(bins * channels));  // (bin, channel) output gradient of one RoI
    for (int64_t r = 0; r < p.num_rois && c0 < c1; ++r) {
      const RoiGeometry g = Geometry(rois + r * kRoiCols, p.cfg, p.pooled_h, p.pooled_w);
      if (g.skip) continue;
      const Level &lv = p.levels[g.level];
      MakeTaps(g, lv, p.pooled_h, p.pooled_w, &taps);
      const int per_bin = g.grid_h * g.grid_w;
      const float count = static_cast<float>(g.grid_h) * static_cast<float>(g.grid_w);
      float *grad = grads.level[g.level] + g.batch * static_cast<int64_t>(lv.height) * lv.width * channels;
      const float *d = dout + r * channels * bins;
      for (int64_t c = c0; c < c1; ++c) {
        for (int64_t bin = 0; bin < bins; ++bin) top[bin * channels + c] = d[c * bins + bin];
      }
      for (int64_t bin = 0; bin < bins; ++bin) {
        const float *tb = top.data() + bin * channels;
        for (int s = 0; s < per_bin; ++s) {
          const Tap &t = taps[bin * per_bin + s];
          if (!t.valid) continue;
          // Corners can coincide at the map's last row/column: one sequential update per corner.
          for (int k = 0; k < 4; ++k) {
            const float w = t.w[k] / count;
            float *gx = grad + t.idx[k] * channels;
#pragma omp simd
            for (int64_t c = c0; c < c1; ++c) gx[c] += tb[c] * w;
          }
        }
      }
    }
  }
  for (int l = 0; l < num_levels; ++l) {
    layout::ToChannelsFirst(grads.level[l], static_cast<float *>(params[3 + num_levels + l]), p.batch, p.channels,
                            static_cast<int64_t>(p.levels[l].height) * p.levels[l].width);
  }
  return 0;
}
