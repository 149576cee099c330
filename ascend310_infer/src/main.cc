/**
 * CSPDarkNet53 inference app: one image at a time through the build-time engine (ASCEND310: MindSpore
 * C++ API on Ascend 310; ORT_CPU: ONNX Runtime on CPU). For each image it writes the raw logits of every
 * model output i, in the model's own dtype (float16 stays float16), to
 * <result_path>/<image basename without its last extension>_<i>.bin, and it reports the average
 * inference time like the model zoo's app.
 */
#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <exception>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "inc/engine.h"
#include "inc/utils.h"

namespace {

double Ms(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

int Fail(const std::string &message) {
  std::cerr << "ERROR: " << message << std::endl;
  return 1;
}

// The model must take one float32 NCHW tensor with batch 1 and 3 channels; fixed H/W must equal --crop.
bool CheckInput(const infer::TensorInfo &in, int crop, std::vector<int64_t> *shape, std::string *error) {
  const std::vector<int64_t> &s = in.shape;
  if (in.dtype != "float32") {
    *error = "model input '" + in.name + "' is " + in.dtype + "; this app feeds float32";
    return false;
  }
  bool ok = s.size() == 4 && (s[0] == 1 || s[0] < 0) && (s[1] == 3 || s[1] < 0) && (s[2] == crop || s[2] < 0) &&
            (s[3] == crop || s[3] < 0);
  if (!ok) {
    *error = "model input '" + in.name + "' has shape " + infer::ShapeToString(s) +
             " but the app feeds [1,3," + std::to_string(crop) + "," + std::to_string(crop) + "]";
    if (s.size() == 4 && s[2] > 0 && s[2] == s[3] && s[2] != crop) {
      *error += "; run with --crop=" + std::to_string(s[2]) + " (and a matching --resize)";
    } else if (s.size() == 4 && s[0] > 1) {
      *error += "; export the model with batch size 1";
    }
    return false;
  }
  *shape = {1, 3, crop, crop};
  return true;
}

std::string LowerExtension(const std::string &path) {
  size_t slash = path.find_last_of('/');
  size_t dot = path.rfind('.');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash)) return "";
  std::string ext = path.substr(dot);
  for (char &c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return ext;
}

// The engine is fixed at build time; say so when the model file plainly belongs to the other one.
bool ModelFitsEngine(const std::string &engine, const std::string &model_path, std::string *error) {
  const std::string ext = LowerExtension(model_path);
  if (engine == "ORT_CPU" && (ext == ".mindir" || ext == ".air" || ext == ".om" || ext == ".ms")) {
    *error = "this app was built with ENGINE=ORT_CPU, which runs .onnx models; " + model_path +
             " needs the ASCEND310 build (bash ascend310_infer/build.sh ASCEND310)";
    return false;
  }
  if (engine == "ASCEND310" && ext == ".onnx") {
    *error = "this app was built with ENGINE=ASCEND310, which runs .mindir models; " + model_path +
             " needs the ORT_CPU build (bash ascend310_infer/build.sh ORT_CPU)";
    return false;
  }
  return true;
}

int Run(int argc, char **argv) {
  infer::Flags flags;
  std::string error;
  switch (infer::ParseFlags(argc, argv, &flags, &error)) {
    case infer::ParseResult::kHelp:
      std::cout << infer::Usage(argv[0]);
      return 0;
    case infer::ParseResult::kError:
      std::cerr << "ERROR: " << error << "\n" << infer::Usage(argv[0]);
      return 2;
    case infer::ParseResult::kOk:
      break;
  }

  std::string model_path = infer::RealPath(flags.model_path);
  if (model_path.empty() || !infer::IsRegularFile(model_path)) {
    return Fail("Invalid model: " + flags.model_path + " is not an existing file");
  }
  std::vector<std::string> images;
  size_t skipped = 0;
  if (!infer::ListImages(flags.dataset_path, &images, &skipped, &error)) return Fail(error);
  if (images.empty()) {
    return Fail("no input images in " + flags.dataset_path + " (looked for .jpg/.jpeg/.png/.bmp/.webp/.tif files " +
                "directly inside and one folder level down)");
  }
  // One result file per image name: two class folders holding the same file name would collide.
  std::map<std::string, std::string> stems;
  for (const std::string &image : images) {
    auto inserted = stems.emplace(infer::ResultStem(image), image);
    if (!inserted.second) {
      return Fail("images " + inserted.first->second + " and " + image + " would both write " +
                  inserted.first->first + "_0.bin; rename one of them");
    }
  }
  std::cout << "Found " << images.size() << " images in " << flags.dataset_path;
  if (skipped) std::cout << " (" << skipped << " other files ignored)";
  std::cout << std::endl;

  std::unique_ptr<infer::Engine> engine = infer::CreateEngine();
  if (!ModelFitsEngine(engine->Name(), model_path, &error)) return Fail(error);
  infer::EngineOptions options;
  options.model_path = model_path;
  options.device_id = flags.device_id;
  options.threads = flags.threads;
  if (!engine->Init(options, &error)) return Fail(std::string(engine->Name()) + ": " + error);
  std::vector<infer::TensorInfo> inputs = engine->Inputs();
  if (inputs.size() != 1) return Fail("the model has " + std::to_string(inputs.size()) + " inputs; expected 1");
  std::vector<int64_t> input_shape;
  if (!CheckInput(inputs[0], flags.crop, &input_shape, &error)) return Fail(error);
  std::cout << "Engine " << engine->Name() << ", model " << model_path << ", input '" << inputs[0].name << "' "
            << infer::ShapeToString(input_shape) << " float32" << std::endl;

  if (!infer::MakeDirs(flags.result_path, &error)) return Fail(error);
  if (!flags.dump_input_path.empty() && !infer::MakeDirs(flags.dump_input_path, &error)) return Fail(error);

  std::vector<double> infer_ms, pre_ms;
  infer_ms.reserve(images.size());
  pre_ms.reserve(images.size());
  std::vector<float> input;
  std::vector<infer::OutputBlob> outputs;
  for (size_t n = 0; n < images.size(); ++n) {
    const std::string &image = images[n];
    std::cout << "Start predict input files:" << image << std::endl;
    auto t0 = std::chrono::steady_clock::now();
    if (!infer::Preprocess(image, flags.resize, flags.crop, &input, &error)) return Fail(error);
    auto t1 = std::chrono::steady_clock::now();
    if (!engine->Run(input, input_shape, &outputs, &error)) {
      return Fail(std::string(engine->Name()) + " inference failed on " + image + ": " + error);
    }
    auto t2 = std::chrono::steady_clock::now();
    pre_ms.push_back(Ms(t0, t1));
    infer_ms.push_back(Ms(t1, t2));

    const std::string stem = infer::ResultStem(image);
    if (!flags.dump_input_path.empty() &&
        !infer::WriteBinary(flags.dump_input_path + "/" + stem + "_input.bin", input.data(),
                            input.size() * sizeof(float), &error)) {
      return Fail(error);
    }
    for (size_t i = 0; i < outputs.size(); ++i) {
      const infer::OutputBlob &out = outputs[i];
      if (n == 0) {
        std::cout << "output " << i << ": " << out.dtype << " " << infer::ShapeToString(out.shape) << ", "
                  << out.bytes.size() << " bytes per image" << std::endl;
      }
      std::string file = flags.result_path + "/" + stem + "_" + std::to_string(i) + ".bin";
      if (!infer::WriteBinary(file, out.bytes.data(), out.bytes.size(), &error)) return Fail(error);
    }
  }

  double sum = 0.0, pre_sum = 0.0;
  for (double v : infer_ms) sum += v;
  for (double v : pre_ms) pre_sum += v;
  const double average = sum / infer_ms.size();
  std::vector<double> sorted = infer_ms;
  std::sort(sorted.begin(), sorted.end());
  std::ostringstream line;
  line << "NN inference cost average time: " << average << " ms of infer_count " << infer_ms.size();
  std::cout << line.str() << std::endl;
  std::cout << "per image: inference min " << sorted.front() << " ms, median " << sorted[sorted.size() / 2]
            << " ms, max " << sorted.back() << " ms; preprocessing average " << pre_sum / pre_ms.size() << " ms"
            << std::endl;
  if (!infer::MakeDirs(flags.time_path, &error) ||
      !infer::WriteText(flags.time_path + "/test_perform_static.txt", line.str() + "\n", &error)) {
    return Fail(error);
  }
  return 0;
}

}  // namespace

int main(int argc, char **argv) {
  try {
    return Run(argc, argv);
  } catch (const std::exception &e) {
    return Fail(std::string("unexpected exception: ") + e.what());
  }
}
