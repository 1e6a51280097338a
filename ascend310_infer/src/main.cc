/**
 * Faster R-CNN-DCN inference of an exported MINDIR on an Ascend device.
 *
 * For every image file of --dataset_path (name order): decode, the evaluation pipeline's preprocessing (keep-ratio
 * rescale, bottom/right zero padding to the model's input size, normalisation with the ImageNet mean/std, CHW), an
 * image meta [height, width, scale_h, scale_w] of the original image, one Predict call, and the raw bytes of each
 * output written to <result_path>/<image name up to its first dot>_<k>.bin (k = 0 boxes+scores, 1 labels,
 * 2 valid mask), which postprogress.py turns into COCO results. The average Predict latency goes to
 * <time_path>/test_perform_static.txt.
 */
#include <sys/time.h>

#include <array>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "include/api/context.h"
#include "include/api/model.h"
#include "include/api/serialization.h"
#include "include/api/types.h"
#include "include/dataset/execute.h"
#include "include/dataset/vision.h"
#include "inc/utils.h"

using mindspore::Context;
using mindspore::DataType;
using mindspore::Graph;
using mindspore::GraphCell;
using mindspore::Model;
using mindspore::ModelType;
using mindspore::MSTensor;
using mindspore::Serialization;
using mindspore::Status;
using mindspore::dataset::Execute;
using mindspore::dataset::TensorTransform;

namespace {

// The normalisation of the evaluation pipeline (RGB order).
const std::vector<float> kMean = {123.675, 116.28, 103.53};
const std::vector<float> kStd = {58.395, 57.12, 57.375};
const size_t kMetaSize = 4;
const size_t kNumOutputs = 3;

double NowMs() {
  struct timeval now = {0, 0};
  gettimeofday(&now, nullptr);
  return now.tv_sec * 1000.0 + now.tv_usec / 1000.0;
}

bool Apply(const std::shared_ptr<TensorTransform> &op, const MSTensor &input, MSTensor *output, const char *what) {
  Execute execute(op);
  Status ret = execute(input, output);
  if (ret != mindspore::kSuccess) {
    std::cerr << "ERROR: " << what << " failed: " << ret.ToString() << std::endl;
    return false;
  }
  return true;
}

// Decoded RGB HWC uint8 image -> normalised CHW float32 canvas of canvas_h x canvas_w; meta [h, w, sh, sw].
bool Preprocess(const MSTensor &decoded, int32_t canvas_h, int32_t canvas_w, bool keep_ratio, MSTensor *chw,
                float meta[kMetaSize]) {
  namespace vision = mindspore::dataset::vision;
  const std::vector<int64_t> &shape = decoded.Shape();
  int64_t height = shape[0];
  int64_t width = shape[1];
  MSTensor resized;
  MSTensor canvas;
  meta[0] = static_cast<float>(height);
  meta[1] = static_cast<float>(width);
  if (keep_ratio) {
    RescalePlan plan = PlanKeepRatioRescale(height, width, canvas_h, canvas_w);
    resized = decoded;
    for (const std::array<int32_t, 2> &size : plan.sizes) {
      MSTensor previous = resized;
      if (!Apply(std::make_shared<vision::Resize>(std::vector<int32_t>{size[0], size[1]}), previous, &resized,
                 "resize")) {
        return false;
      }
    }
    int32_t final_h = plan.sizes.back()[0];
    int32_t final_w = plan.sizes.back()[1];
    if (final_h > canvas_h || final_w > canvas_w) {
      std::cerr << "ERROR: rescaled image " << final_h << "x" << final_w << " exceeds the model input " << canvas_h
                << "x" << canvas_w << std::endl;
      return false;
    }
    // padding before normalisation, as the evaluation pipeline: the border becomes -mean/std
    std::vector<int32_t> padding = {0, 0, canvas_w - final_w, canvas_h - final_h};
    if (!Apply(std::make_shared<vision::Pad>(padding), resized, &canvas, "pad")) {
      return false;
    }
    meta[2] = plan.scale;
    meta[3] = plan.scale;
  } else {
    if (!Apply(std::make_shared<vision::Resize>(std::vector<int32_t>{canvas_h, canvas_w}), decoded, &canvas,
               "resize")) {
      return false;
    }
    meta[2] = static_cast<float>(static_cast<double>(canvas_h) / height);
    meta[3] = static_cast<float>(static_cast<double>(canvas_w) / width);
  }
  MSTensor normalized;
  if (!Apply(std::make_shared<vision::Normalize>(kMean, kStd), canvas, &normalized, "normalize")) {
    return false;
  }
  return Apply(std::make_shared<vision::HWC2CHW>(), normalized, chw, "HWC2CHW");
}

void WriteLatency(const std::vector<double> &latencies_ms, const std::string &time_dir) {
  double total = 0.0;
  for (double ms : latencies_ms) {
    total += ms;
  }
  double average = latencies_ms.empty() ? 0.0 : total / latencies_ms.size();
  std::stringstream text;
  text << "NN inference cost average time: " << average << " ms of infer_count " << latencies_ms.size()
       << std::endl;
  std::cout << text.str();
  std::ofstream out(time_dir + "/test_perform_static.txt", std::ios::trunc);
  out << text.str();
}

}  // namespace

int main(int argc, char **argv) {
  InferFlags flags;
  if (!ParseFlags(argc, argv, &flags)) {
    return 1;
  }
  if (!EnsureDir(flags.result_path) || !EnsureDir(flags.time_path)) {
    std::cerr << "ERROR: cannot create " << flags.result_path << " or " << flags.time_path << std::endl;
    return 1;
  }

  auto context = std::make_shared<Context>();
  auto ascend = std::make_shared<mindspore::AscendDeviceInfo>();
  ascend->SetDeviceID(flags.device_id);
  ascend->SetPrecisionMode("allow_fp32_to_fp16");
  context->MutableDeviceInfo().push_back(ascend);

  Graph graph;
  Status ret = Serialization::Load(flags.mindir_path, ModelType::kMindIR, &graph);
  if (ret != mindspore::kSuccess) {
    std::cerr << "ERROR: cannot load MINDIR " << flags.mindir_path << ": " << ret.ToString() << std::endl;
    return 1;
  }
  Model model;
  ret = model.Build(GraphCell(graph), context);
  if (ret != mindspore::kSuccess) {
    std::cerr << "ERROR: cannot build the model on Ascend device " << flags.device_id << ": " << ret.ToString()
              << std::endl;
    return 1;
  }
  std::vector<MSTensor> model_inputs = model.GetInputs();
  if (model_inputs.size() != 2 || model_inputs[0].Shape().size() != 4) {
    std::cerr << "ERROR: " << flags.mindir_path << " is not a Faster R-CNN export: expected the inputs "
              << "img (1, 3, H, W) and img_metas (1, 4), got " << model_inputs.size() << " inputs" << std::endl;
    return 1;
  }
  const std::vector<int64_t> &input_shape = model_inputs[0].Shape();
  if (input_shape[0] != 1) {
    std::cerr << "ERROR: the MINDIR was exported with batch size " << input_shape[0]
              << "; this app feeds one image per call: export with --batch_size=1" << std::endl;
    return 1;
  }
  int32_t canvas_h = static_cast<int32_t>(input_shape[2]);
  int32_t canvas_w = static_cast<int32_t>(input_shape[3]);

  std::vector<std::string> files = GetAllFiles(flags.dataset_path);
  if (files.empty()) {
    std::cerr << "ERROR: no image files in " << flags.dataset_path << std::endl;
    return 1;
  }
  auto decode = std::make_shared<mindspore::dataset::vision::Decode>();
  std::vector<double> latencies_ms;
  for (size_t i = 0; i < files.size(); ++i) {
    std::cout << "Start predict input files:" << files[i] << " (" << i + 1 << "/" << files.size() << ")"
              << std::endl;
    MSTensor encoded = ReadFileToTensor(files[i]);
    MSTensor decoded;
    MSTensor image;
    float meta[kMetaSize];
    if (encoded.DataSize() == 0 || !Apply(decode, encoded, &decoded, "decode") ||
        !Preprocess(decoded, canvas_h, canvas_w, flags.keep_ratio, &image, meta)) {
      std::cerr << "ERROR: cannot prepare " << files[i] << std::endl;
      return 1;
    }
    std::vector<MSTensor> inputs;
    inputs.emplace_back(model_inputs[0].Name(), model_inputs[0].DataType(), model_inputs[0].Shape(),
                        image.Data().get(), image.DataSize());
    inputs.emplace_back(model_inputs[1].Name(), model_inputs[1].DataType(), model_inputs[1].Shape(), meta,
                        sizeof(meta));
    std::vector<MSTensor> outputs;
    double start = NowMs();
    ret = model.Predict(inputs, &outputs);
    latencies_ms.push_back(NowMs() - start);
    if (ret != mindspore::kSuccess) {
      std::cerr << "ERROR: Predict failed for " << files[i] << ": " << ret.ToString() << std::endl;
      return 1;
    }
    if (outputs.size() != kNumOutputs) {
      std::cerr << "ERROR: expected " << kNumOutputs << " outputs (boxes, labels, masks), got " << outputs.size()
                << std::endl;
      return 1;
    }
    if (WriteResult(files[i], outputs, flags.result_path) != 0) {
      return 1;
    }
  }
  WriteLatency(latencies_ms, flags.time_path);
  return 0;
}
