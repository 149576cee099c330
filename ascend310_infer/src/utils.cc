/**
 * Engine-independent helpers of the inference app. POSIX + OpenCV only (no std::filesystem, no
 * OpenCV calls that take std::string), so the file also compiles with _GLIBCXX_USE_CXX11_ABI=0 for the
 * Ascend build and still links against a distribution OpenCV.
 */
#include "inc/utils.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

namespace infer {
namespace {

bool ParseInt(const std::string &text, int *value) {
  if (text.empty()) return false;
  char *end = nullptr;
  errno = 0;
  long v = std::strtol(text.c_str(), &end, 10);
  if (errno != 0 || end == nullptr || *end != '\0' || v < INT_MIN || v > INT_MAX) return false;
  *value = static_cast<int>(v);
  return true;
}

std::string ToLower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

bool HasImageExtension(const std::string &name) {
  static const char *kExts[] = {".jpeg", ".jpg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"};
  size_t dot = name.rfind('.');
  if (dot == std::string::npos) return false;
  std::string ext = ToLower(name.substr(dot));
  for (const char *e : kExts) {
    if (ext == e) return true;
  }
  return false;
}

// Non-hidden entries of a directory, sorted by name.
bool ReadDir(const std::string &dir, std::vector<std::string> *names, std::string *error) {
  DIR *d = opendir(dir.c_str());
  if (d == nullptr) {
    *error = "cannot open directory " + dir + ": " + std::strerror(errno);
    return false;
  }
  while (struct dirent *entry = readdir(d)) {
    if (entry->d_name[0] == '.') continue;  // ".", "..", hidden files
    names->push_back(entry->d_name);
  }
  closedir(d);
  std::sort(names->begin(), names->end());
  return true;
}

std::string Join(const std::string &dir, const std::string &name) {
  if (dir.empty() || dir.back() == '/') return dir + name;
  return dir + "/" + name;
}

}  // namespace

std::string Usage(const std::string &program) {
  std::ostringstream s;
  s << "Usage: " << program << " --model_path=MODEL --dataset_path=DIR [options]\n"
    << "  --model_path, --mindir_path  model file (.mindir for the ASCEND310 build, .onnx for ORT_CPU)\n"
    << "  --dataset_path   image folder (files directly inside and one level of class folders) or one image\n"
    << "                   [.]\n"
    << "  --result_path    output folder for <image name without last extension>_<i>.bin [./result_Files]\n"
    << "  --time_path      folder for test_perform_static.txt [./time_Result]\n"
    << "  --device_id      Ascend device id [0]\n"
    << "  --threads        CPU threads of the engine, 0 = engine default [0]\n"
    << "  --resize         override: squash-resize to N x N before the center crop [the model record's]\n"
    << "  --crop           override: center-crop side = network input side [the model record's]\n"
    << "                   (without --resize/--crop the model's own record decides: ONNX metadata, or the\n"
    << "                   sidecar <model>.json of a MINDIR; without a record, the model's input size with\n"
    << "                   a squash resize to size/0.875)\n"
    << "  --dump_input_path  if set, also write each preprocessed float32 CHW input as <stem>_input.bin\n"
    << "  --help           this text\n";
  return s.str();
}

ParseResult ParseFlags(int argc, char **argv, Flags *flags, std::string *error) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-help" || arg == "-h") return ParseResult::kHelp;
    if (arg.size() < 2 || arg[0] != '-') {
      *error = "unexpected argument '" + arg + "' (flags are --name=value)";
      return ParseResult::kError;
    }
    std::string body = arg.substr(arg[1] == '-' ? 2 : 1);
    std::string name, value;
    size_t eq = body.find('=');
    if (eq != std::string::npos) {
      name = body.substr(0, eq);
      value = body.substr(eq + 1);
    } else {
      name = body;
      if (i + 1 >= argc) {
        *error = "flag --" + name + " needs a value";
        return ParseResult::kError;
      }
      value = argv[++i];
    }
    std::string *str_target = nullptr;
    int *int_target = nullptr;
    if (name == "model_path" || name == "mindir_path") {
      if (!flags->model_path.empty() && flags->model_path != value) {
        *error = "--model_path and --mindir_path name different files";
        return ParseResult::kError;
      }
      str_target = &flags->model_path;
    } else if (name == "dataset_path") {
      str_target = &flags->dataset_path;
    } else if (name == "result_path") {
      str_target = &flags->result_path;
    } else if (name == "time_path") {
      str_target = &flags->time_path;
    } else if (name == "dump_input_path") {
      str_target = &flags->dump_input_path;
    } else if (name == "device_id") {
      int_target = &flags->device_id;
    } else if (name == "threads") {
      int_target = &flags->threads;
    } else if (name == "resize") {
      int_target = &flags->resize;
    } else if (name == "crop") {
      int_target = &flags->crop;
    } else {
      *error = "unknown flag --" + name;
      return ParseResult::kError;
    }
    if (str_target != nullptr) {
      *str_target = value;
    } else if (!ParseInt(value, int_target)) {
      *error = "flag --" + name + " needs an integer, got '" + value + "'";
      return ParseResult::kError;
    }
  }
  if (flags->model_path.empty()) {
    *error = "--model_path (or --mindir_path) is required";
    return ParseResult::kError;
  }
  if (flags->device_id < 0 || flags->threads < 0) {
    *error = "--device_id and --threads must be >= 0";
    return ParseResult::kError;
  }
  if (flags->crop < 0 || flags->resize < 0 || (flags->crop > 0 && flags->resize > 0 && flags->resize < flags->crop)) {
    *error = "need 0 < --crop <= --resize, got --resize=" + std::to_string(flags->resize) +
             " --crop=" + std::to_string(flags->crop);
    return ParseResult::kError;
  }
  return ParseResult::kOk;
}

std::string RealPath(const std::string &path) {
  char buf[PATH_MAX];
  if (path.empty() || realpath(path.c_str(), buf) == nullptr) return "";
  return std::string(buf);
}

bool IsDirectory(const std::string &path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool IsRegularFile(const std::string &path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

bool MakeDirs(const std::string &path, std::string *error) {
  if (path.empty()) return true;
  std::string partial;
  std::stringstream ss(path);
  std::string part;
  if (path[0] == '/') partial = "/";
  while (std::getline(ss, part, '/')) {
    if (part.empty()) continue;
    partial = Join(partial, part);
    if (mkdir(partial.c_str(), 0755) != 0 && errno != EEXIST) {
      *error = "cannot create directory " + partial + ": " + std::strerror(errno);
      return false;
    }
  }
  if (!IsDirectory(path)) {
    *error = path + " exists and is not a directory";
    return false;
  }
  return true;
}

bool ListImages(const std::string &path, std::vector<std::string> *files, size_t *skipped, std::string *error) {
  files->clear();
  *skipped = 0;
  if (IsRegularFile(path)) {
    files->push_back(path);
    return true;
  }
  if (!IsDirectory(path)) {
    *error = "dataset path " + path + " does not exist";
    return false;
  }
  std::vector<std::string> top;
  if (!ReadDir(path, &top, error)) return false;
  for (const std::string &name : top) {
    std::string full = Join(path, name);
    if (IsDirectory(full)) {
      std::vector<std::string> inner;
      if (!ReadDir(full, &inner, error)) return false;
      for (const std::string &inner_name : inner) {
        std::string inner_full = Join(full, inner_name);
        if (!IsRegularFile(inner_full)) continue;  // deeper folders are not searched
        if (HasImageExtension(inner_name)) {
          files->push_back(inner_full);
        } else {
          ++*skipped;
        }
      }
    } else if (IsRegularFile(full)) {
      if (HasImageExtension(name)) {
        files->push_back(full);
      } else {
        ++*skipped;
      }
    }
  }
  std::sort(files->begin(), files->end());
  return true;
}

std::string ResultStem(const std::string &path) {
  size_t slash = path.find_last_of('/');
  std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  size_t dot = base.rfind('.');
  if (dot == std::string::npos || dot == 0) return base;
  return base.substr(0, dot);
}

std::string DescribeSpec(const PreprocessSpec &spec) {
  std::string s = spec.resize.size() == 1 ? "shorter side to " + std::to_string(spec.resize[0])
                                          : "squash to " + std::to_string(spec.resize[0]) + "x" +
                                                std::to_string(spec.resize[1]);
  return s + ", centre crop " + std::to_string(spec.crop_h) + "x" + std::to_string(spec.crop_w);
}

float HalfToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1F;
  uint32_t mant = h & 0x3FF;
  uint32_t bits;
  if (exp == 0x1F) {
    bits = sign | 0x7F800000u | (mant << 13);  // inf / NaN
  } else if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      int e = -1;
      do {
        ++e;
        mant <<= 1;
      } while ((mant & 0x400) == 0);
      bits = sign | (static_cast<uint32_t>(127 - 15 - e) << 23) | ((mant & 0x3FF) << 13);
    }
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

bool Preprocess(const std::string &image_path, const PreprocessSpec &spec, std::vector<float> *chw,
                std::string *error) {
  std::ifstream in(image_path, std::ios::binary);
  if (!in) {
    *error = "cannot open image " + image_path;
    return false;
  }
  std::vector<uchar> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (bytes.empty()) {
    *error = "image file is empty: " + image_path;
    return false;
  }
  // imdecode (not imread: it takes no std::string, so it links under either libstdc++ ABI). EXIF
  // orientation is ignored, like MindSpore's Decode.
  cv::Mat bgr = cv::imdecode(cv::Mat(1, static_cast<int>(bytes.size()), CV_8UC1, bytes.data()),
                             cv::IMREAD_COLOR | cv::IMREAD_IGNORE_ORIENTATION);
  if (bgr.empty()) {
    *error = "cannot decode image " + image_path + " (not an image OpenCV can read?)";
    return false;
  }
  cv::Mat rgb, resized;
  cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);
  int out_h, out_w;
  if (spec.resize.size() == 1) {  // MindSpore's Resize(int): the shorter side to the size, computed in float
    const int size = spec.resize[0];
    if (rgb.rows < rgb.cols) {
      out_h = size;
      out_w = static_cast<int>(std::floor(static_cast<float>(rgb.cols) / rgb.rows * out_h));
    } else {
      out_w = size;
      out_h = static_cast<int>(std::floor(static_cast<float>(rgb.rows) / rgb.cols * out_w));
    }
  } else {
    out_h = spec.resize[0];
    out_w = spec.resize[1];
  }
  if (out_h == rgb.rows && out_w == rgb.cols) {
    resized = rgb;
  } else {
    cv::resize(rgb, resized, cv::Size(out_w, out_h), 0, 0, cv::INTER_LINEAR);
  }
  const int crop_h = spec.crop_h, crop_w = spec.crop_w;
  if (out_h < crop_h || out_w < crop_w) {
    *error = image_path + ": resized to " + std::to_string(out_h) + "x" + std::to_string(out_w) +
             ", smaller than the crop " + std::to_string(crop_h) + "x" + std::to_string(crop_w);
    return false;
  }
  const int top = (out_h - crop_h) / 2, left = (out_w - crop_w) / 2;  // rounded down, as MindSpore's CenterCrop
  cv::Mat roi = resized(cv::Rect(left, top, crop_w, crop_h));
  const size_t plane = static_cast<size_t>(crop_h) * crop_w;
  chw->assign(3 * plane, 0.0f);
  for (int y = 0; y < crop_h; ++y) {
    const uchar *row = roi.ptr<uchar>(y);
    for (int x = 0; x < crop_w; ++x) {
      for (int c = 0; c < 3; ++c) {
        (*chw)[c * plane + static_cast<size_t>(y) * crop_w + x] =
            (static_cast<float>(row[3 * x + c]) - spec.mean[c]) / spec.stdev[c];
      }
    }
  }
  return true;
}

bool WriteBinary(const std::string &path, const void *data, size_t size, std::string *error) {
  FILE *f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) {
    *error = "cannot write " + path + ": " + std::strerror(errno);
    return false;
  }
  size_t written = size == 0 ? 0 : std::fwrite(data, 1, size, f);
  bool ok = written == size;
  ok = (std::fclose(f) == 0) && ok;
  if (!ok) *error = "short write to " + path;
  return ok;
}

bool WriteText(const std::string &path, const std::string &text, std::string *error) {
  return WriteBinary(path, text.data(), text.size(), error);
}

size_t DTypeSize(const std::string &dtype) {
  if (dtype == "float32" || dtype == "int32" || dtype == "uint32") return 4;
  if (dtype == "float16" || dtype == "bfloat16" || dtype == "int16" || dtype == "uint16") return 2;
  if (dtype == "float64" || dtype == "int64" || dtype == "uint64") return 8;
  if (dtype == "int8" || dtype == "uint8" || dtype == "bool") return 1;
  return 0;
}

std::string ShapeToString(const std::vector<int64_t> &shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ",";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

}  // namespace infer
