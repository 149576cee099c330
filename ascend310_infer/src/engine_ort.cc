/**
 * ORT_CPU engine: the ONNX export of the checkpoint through ONNX Runtime's C++ API on CPU.
 */
#define ORT_API_MANUAL_INIT
#include <onnxruntime_cxx_api.h>

#include <cstring>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "inc/engine.h"
#include "inc/utils.h"

namespace infer {
namespace {

std::string OrtTypeName(ONNXTensorElementDataType type) {
  switch (type) {
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT: return "float32";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16: return "float16";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16: return "bfloat16";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE: return "float64";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8: return "int8";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8: return "uint8";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT16: return "int16";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT16: return "uint16";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32: return "int32";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT32: return "uint32";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64: return "int64";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT64: return "uint64";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL: return "bool";
    default: return "onnx_type_" + std::to_string(static_cast<int>(type));
  }
}

class OrtEngine : public Engine {
 public:
  const char *Name() const override { return "ORT_CPU"; }

  bool Init(const EngineOptions &options, std::string *error) override {
    const OrtApiBase *base = OrtGetApiBase();
    const OrtApi *api = base->GetApi(ORT_API_VERSION);
    if (api == nullptr) {
      *error = std::string("the ONNX Runtime library (version ") + base->GetVersionString() +
               ") does not offer C API version " + std::to_string(ORT_API_VERSION) +
               " that the headers need: use headers no newer than the library";
      return false;
    }
    Ort::InitApi(api);
    try {
      env_ = std::make_unique<Ort::Env>(ORT_LOGGING_LEVEL_WARNING, "cspdarknet53_infer");
      Ort::SessionOptions so;
      if (options.threads > 0) so.SetIntraOpNumThreads(options.threads);
      so.SetInterOpNumThreads(1);
      so.SetGraphOptimizationLevel(GraphOptimizationLevel::ORT_ENABLE_ALL);
      session_ = std::make_unique<Ort::Session>(*env_, options.model_path.c_str(), so);
      Ort::AllocatorWithDefaultOptions allocator;
      for (size_t i = 0; i < session_->GetInputCount(); ++i) {
        TensorInfo info;
        info.name = session_->GetInputNameAllocated(i, allocator).get();
        Ort::TypeInfo type = session_->GetInputTypeInfo(i);
        if (type.GetONNXType() != ONNX_TYPE_TENSOR) {
          *error = "model input '" + info.name + "' is not a tensor";
          return false;
        }
        auto tensor = type.GetTensorTypeAndShapeInfo();
        info.dtype = OrtTypeName(tensor.GetElementType());
        info.shape = tensor.GetShape();
        inputs_.push_back(info);
      }
      for (size_t i = 0; i < session_->GetOutputCount(); ++i) {
        output_names_.push_back(session_->GetOutputNameAllocated(i, allocator).get());
      }
      std::cout << "ONNX Runtime " << base->GetVersionString() << " (C API " << ORT_API_VERSION << "), "
                << (options.threads > 0 ? std::to_string(options.threads) : std::string("default")) << " threads"
                << std::endl;
      if (options.device_id != 0) std::cout << "note: --device_id is ignored by ORT_CPU" << std::endl;
    } catch (const Ort::Exception &e) {
      *error = std::string("cannot load ") + options.model_path + ": " + e.what();
      return false;
    }
    return true;
  }

  std::vector<TensorInfo> Inputs() const override { return inputs_; }

  std::string Metadata(const std::string &key) const override {
    try {
      Ort::AllocatorWithDefaultOptions allocator;
      Ort::ModelMetadata metadata = session_->GetModelMetadata();
      Ort::AllocatedStringPtr value = metadata.LookupCustomMetadataMapAllocated(key.c_str(), allocator);
      return value ? std::string(value.get()) : std::string();
    } catch (const Ort::Exception &e) {
      std::cerr << "warning: cannot read the model's metadata: " << e.what() << std::endl;
      return "";
    }
  }

  bool Run(const std::vector<float> &input, const std::vector<int64_t> &shape, std::vector<OutputBlob> *outputs,
           std::string *error) override {
    try {
      Ort::MemoryInfo memory = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
      Ort::Value tensor = Ort::Value::CreateTensor<float>(memory, const_cast<float *>(input.data()), input.size(),
                                                          shape.data(), shape.size());
      const char *input_name = inputs_[0].name.c_str();
      std::vector<const char *> names;
      for (const std::string &n : output_names_) names.push_back(n.c_str());
      std::vector<Ort::Value> values =
          session_->Run(Ort::RunOptions{nullptr}, &input_name, &tensor, 1, names.data(), names.size());
      outputs->resize(values.size());
      for (size_t i = 0; i < values.size(); ++i) {
        auto info = values[i].GetTensorTypeAndShapeInfo();
        OutputBlob &blob = (*outputs)[i];
        blob.dtype = OrtTypeName(info.GetElementType());
        blob.shape = info.GetShape();
        size_t element = DTypeSize(blob.dtype);
        if (element == 0) {
          *error = "output " + std::to_string(i) + " has unsupported dtype " + blob.dtype;
          return false;
        }
        size_t size = info.GetElementCount() * element;
        const uint8_t *data = static_cast<const uint8_t *>(values[i].GetTensorRawData());
        blob.bytes.assign(data, data + size);
      }
    } catch (const Ort::Exception &e) {
      *error = e.what();
      return false;
    }
    return true;
  }

 private:
  std::unique_ptr<Ort::Env> env_;
  std::unique_ptr<Ort::Session> session_;
  std::vector<TensorInfo> inputs_;
  std::vector<std::string> output_names_;
};

}  // namespace

std::unique_ptr<Engine> CreateEngine() { return std::make_unique<OrtEngine>(); }

}  // namespace infer
