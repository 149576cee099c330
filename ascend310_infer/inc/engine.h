/**
 * The inference engine, chosen at build time (CMake -DENGINE=ASCEND310 | ORT_CPU): exactly one of
 * src/engine_ascend310.cc and src/engine_ort.cc is compiled and provides CreateEngine().
 */
#ifndef CSPDARKNET53_INFER_ENGINE_H_
#define CSPDARKNET53_INFER_ENGINE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace infer {

struct EngineOptions {
  std::string model_path;
  int device_id = 0;
  int threads = 0;  // 0 = engine default
};

struct TensorInfo {
  std::string name;
  std::string dtype;            // "float32", "float16", ...
  std::vector<int64_t> shape;   // -1 for a dynamic dimension
};

struct OutputBlob {
  std::string dtype;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;   // raw values in the model's own dtype
};

class Engine {
 public:
  virtual ~Engine() = default;
  virtual const char *Name() const = 0;
  // Loads and prepares the model. On failure returns false and sets *error.
  virtual bool Init(const EngineOptions &options, std::string *error) = 0;
  virtual std::vector<TensorInfo> Inputs() const = 0;
  // The model's custom metadata value under `key` (ONNX metadata_props); "" when there is none or the
  // engine's model format has no such metadata (then the record comes from the sidecar JSON).
  virtual std::string Metadata(const std::string &key) const {
    (void)key;
    return "";
  }
  // Runs one float32 NCHW input of the given shape; fills one blob per model output.
  virtual bool Run(const std::vector<float> &input, const std::vector<int64_t> &shape,
                   std::vector<OutputBlob> *outputs, std::string *error) = 0;
};

std::unique_ptr<Engine> CreateEngine();

}  // namespace infer

#endif  // CSPDARKNET53_INFER_ENGINE_H_
