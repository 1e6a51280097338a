/**
 * Helpers of the Faster R-CNN-DCN inference app: command-line flags, file listing, reading and writing raw
 * tensors, and the evaluation pipeline's keep-ratio rescale arithmetic.
 */
#ifndef FASTER_RCNN_DCN_INFER_UTILS_H_
#define FASTER_RCNN_DCN_INFER_UTILS_H_

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "include/api/types.h"

/// Command-line options of `main` (`--name=value`).
struct InferFlags {
  std::string mindir_path;               ///< exported MINDIR (batch size 1)
  std::string dataset_path = ".";        ///< folder of images (every regular file is read, in name order)
  std::string result_path = "./result_Files";  ///< one `<stem>_<k>.bin` per image and output k
  std::string time_path = "./time_Result";     ///< average latency report
  int32_t device_id = 0;
  bool keep_ratio = true;                ///< keep-ratio rescale + pad (as training), else a plain resize
};

/// Parses `--mindir_path= --dataset_path= --result_path= --time_path= --device_id= --keep_ratio=`; prints the
/// problem and returns false on an unknown flag or a malformed value.
bool ParseFlags(int argc, char **argv, InferFlags *flags);

/// Regular files of `dir`, full paths sorted by name; empty (with a message) when `dir` cannot be read.
std::vector<std::string> GetAllFiles(const std::string &dir);

/// The file name without folder and without extension (`a/b/000001.jpg` -> `000001`).
std::string FileStem(const std::string &path);

/// Creates `dir` (one level) unless it exists; false if it cannot.
bool EnsureDir(const std::string &dir);

/// The bytes of `file` as a 1-D uint8 tensor; an empty tensor (and a message) if it cannot be read.
mindspore::MSTensor ReadFileToTensor(const std::string &file);

/// Writes output k of `outputs` to `<result_dir>/<stem of image_file>_<k>.bin` (raw bytes); 0 on success.
int WriteResult(const std::string &image_file, const std::vector<mindspore::MSTensor> &outputs,
                const std::string &result_dir);

/// The evaluation pipeline's keep-ratio rescale of a `height` x `width` image for a `canvas_h` x `canvas_w` canvas
/// (src/data_transforms.py): factor min(long bound / long side, short bound / short side), sizes rounded half up;
/// while the height (then the width) still exceeds the canvas, another pass into a square of that bound.
struct RescalePlan {
  std::vector<std::array<int32_t, 2>> sizes;  ///< (height, width) after each resize pass, in order
  float scale;                                ///< product of the passes' factors (the image meta's scale)
};
RescalePlan PlanKeepRatioRescale(int64_t height, int64_t width, int32_t canvas_h, int32_t canvas_w);

#endif  // FASTER_RCNN_DCN_INFER_UTILS_H_
