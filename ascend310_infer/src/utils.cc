/**
 * Helpers of the Faster R-CNN-DCN inference app (see inc/utils.h).
 */
#include "inc/utils.h"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <string>
#include <vector>

namespace {

bool ParseBool(const std::string &text, bool *value) {
  if (text == "true" || text == "True" || text == "1") {
    *value = true;
    return true;
  }
  if (text == "false" || text == "False" || text == "0") {
    *value = false;
    return true;
  }
  return false;
}

bool ParseInt(const std::string &text, int32_t *value) {
  if (text.empty()) {
    return false;
  }
  char *end = nullptr;
  errno = 0;
  long parsed = std::strtol(text.c_str(), &end, 10);
  if (errno != 0 || *end != '\0' || parsed < 0 || parsed > INT32_MAX) {
    return false;
  }
  *value = static_cast<int32_t>(parsed);
  return true;
}

}  // namespace

bool ParseFlags(int argc, char **argv, InferFlags *flags) {
  for (int i = 1; i < argc; ++i) {
    std::string arg(argv[i]);
    size_t eq = arg.find('=');
    if (arg.rfind("--", 0) != 0 || eq == std::string::npos) {
      std::cerr << "ERROR: argument '" << arg << "' is not of the form --name=value" << std::endl;
      return false;
    }
    std::string name = arg.substr(2, eq - 2);
    std::string value = arg.substr(eq + 1);
    bool ok = true;
    if (name == "mindir_path") {
      flags->mindir_path = value;
    } else if (name == "dataset_path") {
      flags->dataset_path = value;
    } else if (name == "result_path") {
      flags->result_path = value;
    } else if (name == "time_path") {
      flags->time_path = value;
    } else if (name == "device_id") {
      ok = ParseInt(value, &flags->device_id);
    } else if (name == "keep_ratio") {
      ok = ParseBool(value, &flags->keep_ratio);
    } else {
      std::cerr << "ERROR: unknown flag --" << name
                << " (known: --mindir_path --dataset_path --result_path --time_path --device_id --keep_ratio)"
                << std::endl;
      return false;
    }
    if (!ok) {
      std::cerr << "ERROR: --" << name << "=" << value << " is not a valid value" << std::endl;
      return false;
    }
  }
  if (flags->mindir_path.empty()) {
    std::cerr << "ERROR: --mindir_path is required" << std::endl;
    return false;
  }
  return true;
}

std::vector<std::string> GetAllFiles(const std::string &dir) {
  std::vector<std::string> files;
  DIR *handle = opendir(dir.c_str());
  if (handle == nullptr) {
    std::cerr << "ERROR: cannot open image folder " << dir << ": " << std::strerror(errno) << std::endl;
    return files;
  }
  for (struct dirent *entry = readdir(handle); entry != nullptr; entry = readdir(handle)) {
    std::string path = dir + "/" + entry->d_name;
    struct stat info;
    if (entry->d_name[0] != '.' && stat(path.c_str(), &info) == 0 && S_ISREG(info.st_mode)) {
      files.push_back(path);
    }
  }
  closedir(handle);
  std::sort(files.begin(), files.end());
  return files;
}

std::string FileStem(const std::string &path) {
  size_t slash = path.find_last_of('/');
  std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
  // as the post-processing expects: the name up to its first dot
  return name.substr(0, name.find('.'));
}

bool EnsureDir(const std::string &dir) {
  struct stat info;
  if (stat(dir.c_str(), &info) == 0) {
    return S_ISDIR(info.st_mode);
  }
  return mkdir(dir.c_str(), 0755) == 0;
}

mindspore::MSTensor ReadFileToTensor(const std::string &file) {
  std::ifstream stream(file, std::ios::binary | std::ios::ate);
  if (!stream.is_open()) {
    std::cerr << "ERROR: cannot read " << file << std::endl;
    return mindspore::MSTensor();
  }
  std::streamsize size = stream.tellg();
  stream.seekg(0, std::ios::beg);
  mindspore::MSTensor tensor(file, mindspore::DataType::kNumberTypeUInt8, {static_cast<int64_t>(size)}, nullptr,
                             static_cast<size_t>(size));
  if (!stream.read(reinterpret_cast<char *>(tensor.MutableData()), size)) {
    std::cerr << "ERROR: short read of " << file << std::endl;
    return mindspore::MSTensor();
  }
  return tensor;
}

int WriteResult(const std::string &image_file, const std::vector<mindspore::MSTensor> &outputs,
                const std::string &result_dir) {
  std::string stem = FileStem(image_file);
  for (size_t k = 0; k < outputs.size(); ++k) {
    std::string path = result_dir + "/" + stem + "_" + std::to_string(k) + ".bin";
    std::string tmp = path + ".tmp";
    std::shared_ptr<const void> data = outputs[k].Data();
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char *>(data.get()), static_cast<std::streamsize>(outputs[k].DataSize()));
    out.close();
    if (!out || std::rename(tmp.c_str(), path.c_str()) != 0) {
      std::cerr << "ERROR: cannot write " << path << std::endl;
      return 1;
    }
  }
  return 0;
}

RescalePlan PlanKeepRatioRescale(int64_t height, int64_t width, int32_t canvas_h, int32_t canvas_w) {
  auto fit = [](double h, double w, double bound_a, double bound_b) {
    return std::min(std::max(bound_a, bound_b) / std::max(h, w), std::min(bound_a, bound_b) / std::min(h, w));
  };
  auto rounded = [](double side, double factor) { return static_cast<int32_t>(side * factor + 0.5); };
  RescalePlan plan;
  double scale = fit(height, width, canvas_w, canvas_h);
  plan.sizes.push_back({rounded(height, scale), rounded(width, scale)});
  // further passes while a side still exceeds its bound: the height first (the original's), then the width
  for (int axis = 0; axis < 2; ++axis) {
    std::array<int32_t, 2> last = plan.sizes.back();
    int32_t bound = axis == 0 ? canvas_h : canvas_w;
    if (last[axis] > bound) {
      double extra = fit(last[0], last[1], bound, bound);
      plan.sizes.push_back({rounded(last[0], extra), rounded(last[1], extra)});
      scale *= extra;
    }
  }
  plan.scale = static_cast<float>(scale);
  return plan;
}
