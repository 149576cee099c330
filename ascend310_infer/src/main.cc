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
#include <cmath>
#include <cstdio>
#include <cstring>
#include <iomanip>
#include <exception>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "inc/engine.h"
#include "inc/record.h"
#include "inc/utils.h"

namespace {

double Ms(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

int Fail(const std::string &message) {
  std::cerr << "ERROR: " << message << std::endl;
  return 1;
}

// Hints that name the real options: the app's flags and the variables of scripts/run_infer_310.sh.
std::string OverrideHint(int h, int w) {
  std::string size = std::to_string(h);
  if (h != w) return "a non-square input " + std::to_string(h) + "x" + std::to_string(w) + " cannot be set by --crop";
  return "--crop=" + size + " with a matching --resize (scripts/run_infer_310.sh: CROP=" + size + " RESIZE=...)";
}

// The preprocessing: the model record's, else the model's fixed input size with the zoo's squash resize to
// size/0.875; --crop / --resize override. Sets *source to say where it came from.
infer::PreprocessSpec ChoosePreprocess(const infer::Flags &flags, const infer::ModelRecord &record,
                                       const infer::TensorInfo &input, std::string *source) {
  infer::PreprocessSpec spec;
  const std::vector<int64_t> &s = input.shape;
  const bool fixed = s.size() == 4 && s[2] > 0 && s[3] > 0;
  double crop_pct = 0.875;
  bool shorter = false;
  if (record.present) {
    spec.crop_h = record.height;
    spec.crop_w = record.width;
    spec.resize = record.resize;
    for (int c = 0; c < 3; ++c) {
      spec.mean[c] = record.mean[c];
      spec.stdev[c] = record.stdev[c];
    }
    if (record.crop_pct > 0) crop_pct = record.crop_pct;
    shorter = record.resize.size() == 1;
    *source = "the model record (" + record.where + ")";
  } else if (fixed) {
    spec.crop_h = static_cast<int>(s[2]);
    spec.crop_w = static_cast<int>(s[3]);
    spec.resize = {static_cast<int>(std::nearbyint(spec.crop_h / crop_pct)),
                   static_cast<int>(std::nearbyint(spec.crop_w / crop_pct))};
    *source = "the model's input size (no model record: squash resize to size/0.875, ImageNet mean/std)";
  } else {
    *source = "the defaults (no model record, dynamic input size)";
  }
  if (flags.crop > 0) {
    spec.crop_h = spec.crop_w = flags.crop;
    if (flags.resize <= 0) {  // keep the record's resize rule for the new crop (Python's round: half to even)
      if (shorter) {
        spec.resize = {static_cast<int>(std::floor(flags.crop / crop_pct))};
      } else {
        const int r = static_cast<int>(std::nearbyint(flags.crop / crop_pct));
        spec.resize = {r, r};
      }
    }
    *source += ", --crop=" + std::to_string(flags.crop);
  }
  if (flags.resize > 0) {
    spec.resize = {flags.resize, flags.resize};
    *source += ", --resize=" + std::to_string(flags.resize);
  }
  return spec;
}

// The model must take one float32 NCHW tensor with batch 1 and 3 channels; fixed H/W must equal the crop.
bool CheckInput(const infer::TensorInfo &in, const infer::PreprocessSpec &spec, const infer::Flags &flags,
                const infer::ModelRecord &record, std::vector<int64_t> *shape, std::string *error) {
  const std::vector<int64_t> &s = in.shape;
  if (in.dtype != "float32") {
    *error = "model input '" + in.name + "' is " + in.dtype + "; this app feeds float32";
    return false;
  }
  const int h = spec.crop_h, w = spec.crop_w;
  bool ok = s.size() == 4 && (s[0] == 1 || s[0] < 0) && (s[1] == 3 || s[1] < 0) && (s[2] == h || s[2] < 0) &&
            (s[3] == w || s[3] < 0);
  if (!ok) {
    *error = "model input '" + in.name + "' has shape " + infer::ShapeToString(s) + " but the preprocessing gives [1,3," +
             std::to_string(h) + "," + std::to_string(w) + "]";
    if (s.size() == 4 && s[0] > 1) {
      *error += "; export the model with batch size 1";
    } else if (s.size() == 4 && s[2] > 0 && s[3] > 0) {
      const int mh = static_cast<int>(s[2]), mw = static_cast<int>(s[3]);
      if (flags.crop > 0) {
        *error += " because of --crop=" + std::to_string(flags.crop) + " (scripts/run_infer_310.sh: CROP=" +
                  std::to_string(flags.crop) + "); leave --crop and --resize out (unset CROP and RESIZE) so that the " +
                  "model's own record decides, or use " + OverrideHint(mh, mw);
      } else if (record.present) {
        *error += ": the model record (" + record.where + ") says " + std::to_string(record.height) + "x" +
                  std::to_string(record.width) + ", so it belongs to another export of the model; export it again, " +
                  "or override with " + OverrideHint(mh, mw);
      } else {
        *error += "; use " + OverrideHint(mh, mw);
      }
    }
    return false;
  }
  *shape = {1, 3, h, w};
  return true;
}

// The logits of one image as float32 (float16 and float32 outputs); false for another dtype.
bool Logits(const infer::OutputBlob &out, std::vector<float> *values) {
  values->clear();
  if (out.dtype == "float32") {
    values->resize(out.bytes.size() / 4);
    std::memcpy(values->data(), out.bytes.data(), values->size() * 4);
    return true;
  }
  if (out.dtype == "float16") {
    const size_t n = out.bytes.size() / 2;
    values->resize(n);
    for (size_t i = 0; i < n; ++i) {
      uint16_t h;
      std::memcpy(&h, out.bytes.data() + 2 * i, 2);
      (*values)[i] = infer::HalfToFloat(h);
    }
    return true;
  }
  return false;
}

// "top-1: 3 dress (p=0.91)": the arg-max with its softmax probability (at the record's temperature, if any).
std::string TopLine(const std::vector<float> &logits, const infer::ModelRecord &record) {
  size_t best = 0;
  bool finite = true;
  for (size_t i = 0; i < logits.size(); ++i) {
    if (!std::isfinite(logits[i])) finite = false;
    if (logits[i] > logits[best]) best = i;
  }
  if (!finite || logits.empty()) return "top-1: none (non-finite logits)";
  const double t = record.temperature > 0 ? record.temperature : 1.0;
  double sum = 0.0;
  for (float v : logits) sum += std::exp((static_cast<double>(v) - logits[best]) / t);
  std::ostringstream line;
  line << "top-1: " << best;
  if (best < record.class_names.size()) line << " " << record.class_names[best];
  line << " (p=" << std::fixed << std::setprecision(4) << 1.0 / sum << (record.temperature > 0 ? ", calibrated" : "")
       << ")";
  return line.str();
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
  infer::ModelRecord record;
  const std::string embedded = engine->Metadata(infer::kRecordKey);
  if (!embedded.empty()) {
    if (!infer::ParseModelRecord(embedded, model_path + " (metadata '" + infer::kRecordKey + "')", &record, &error)) {
      return Fail(error);
    }
  } else if (!infer::ReadSidecarRecord(model_path, &record, &error)) {
    return Fail(error);
  }
  // run_infer_310.sh reads this line to tell postprocess.py whether the model has a record
  if (record.present) {
    std::cout << "model record: " << record.where << ": " << infer::DescribeRecord(record) << std::endl;
  } else {
    std::cout << "model record: none (no ONNX metadata '" << infer::kRecordKey << "', no " << model_path
              << ".json); class names unknown" << std::endl;
  }
  std::string source;
  const infer::PreprocessSpec spec = ChoosePreprocess(flags, record, inputs[0], &source);
  std::vector<int64_t> input_shape;
  if (!CheckInput(inputs[0], spec, flags, record, &input_shape, &error)) return Fail(error);
  std::cout << "Engine " << engine->Name() << ", model " << model_path << ", input '" << inputs[0].name << "' "
            << infer::ShapeToString(input_shape) << " float32" << std::endl;
  std::cout << "preprocessing: " << infer::DescribeSpec(spec) << ", from " << source << std::endl;

  if (!infer::MakeDirs(flags.result_path, &error)) return Fail(error);
  if (!flags.dump_input_path.empty() && !infer::MakeDirs(flags.dump_input_path, &error)) return Fail(error);

  std::vector<double> infer_ms, pre_ms;
  infer_ms.reserve(images.size());
  pre_ms.reserve(images.size());
  std::vector<float> input, logits;
  std::vector<infer::OutputBlob> outputs;
  for (size_t n = 0; n < images.size(); ++n) {
    const std::string &image = images[n];
    std::cout << "Start predict input files:" << image << std::endl;
    auto t0 = std::chrono::steady_clock::now();
    if (!infer::Preprocess(image, spec, &input, &error)) return Fail(error);
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
    if (!outputs.empty() && Logits(outputs[0], &logits)) {
      if (n == 0 && record.present && logits.size() != static_cast<size_t>(record.num_classes)) {
        return Fail("the model outputs " + std::to_string(logits.size()) + " logits but its record (" + record.where +
                    ") says " + std::to_string(record.num_classes) + " classes: the record belongs to another model");
      }
      std::cout << "  " << TopLine(logits, record) << std::endl;
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
