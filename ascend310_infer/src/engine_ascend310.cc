/**
 * ASCEND310 engine: the model zoo's path. MindSpore C++ API with Ascend310DeviceInfo,
 * Serialization::Load of the MINDIR and Model::Build(GraphCell); linked against the installed MindSpore
 * (Ascend) package. The full MindSpore library implements only Build(GraphCell), not Build(path).
 */
#include <exception>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "include/api/context.h"
#include "include/api/model.h"
#include "include/api/serialization.h"
#include "include/api/types.h"
#include "inc/engine.h"
#include "inc/utils.h"

namespace infer {
namespace {

using mindspore::DataType;

std::string MsTypeName(DataType type) {
  switch (type) {
    case DataType::kNumberTypeFloat32: return "float32";
    case DataType::kNumberTypeFloat16: return "float16";
    case DataType::kNumberTypeFloat64: return "float64";
    case DataType::kNumberTypeInt8: return "int8";
    case DataType::kNumberTypeUInt8: return "uint8";
    case DataType::kNumberTypeInt16: return "int16";
    case DataType::kNumberTypeUInt16: return "uint16";
    case DataType::kNumberTypeInt32: return "int32";
    case DataType::kNumberTypeUInt32: return "uint32";
    case DataType::kNumberTypeInt64: return "int64";
    case DataType::kNumberTypeUInt64: return "uint64";
    case DataType::kNumberTypeBool: return "bool";
    default: return "ms_type_" + std::to_string(static_cast<int>(type));
  }
}

class AscendEngine : public Engine {
 public:
  const char *Name() const override { return "ASCEND310"; }

  bool Init(const EngineOptions &options, std::string *error) override {
    auto context = std::make_shared<mindspore::Context>();
    auto ascend310 = std::make_shared<mindspore::Ascend310DeviceInfo>();
    ascend310->SetDeviceID(static_cast<uint32_t>(options.device_id));
    context->MutableDeviceInfo().push_back(ascend310);
    if (options.threads > 0) std::cout << "note: --threads is ignored by ASCEND310" << std::endl;

    mindspore::Graph graph;
    try {  // some MindSpore builds throw instead of returning a Status on an unreadable MINDIR
      mindspore::Status ret = mindspore::Serialization::Load(options.model_path, mindspore::ModelType::kMindIR, &graph);
      if (!ret.IsOk()) {
        *error = "Load model failed (" + options.model_path + "): " + ret.ToString();
        return false;
      }
      ret = model_.Build(mindspore::GraphCell(graph), context);
      if (!ret.IsOk()) {
        *error = "Build failed on device " + std::to_string(options.device_id) + ": " + ret.ToString();
        return false;
      }
    } catch (const std::exception &e) {
      *error = std::string("Load/Build of ") + options.model_path + " threw: " + e.what();
      return false;
    }
    model_inputs_ = model_.GetInputs();
    for (const mindspore::MSTensor &t : model_inputs_) {
      TensorInfo info;
      info.name = t.Name();
      info.dtype = MsTypeName(t.DataType());
      info.shape = t.Shape();
      inputs_.push_back(info);
    }
    return true;
  }

  std::vector<TensorInfo> Inputs() const override { return inputs_; }

  bool Run(const std::vector<float> &input, const std::vector<int64_t> &shape, std::vector<OutputBlob> *outputs,
           std::string *error) override {
    std::vector<mindspore::MSTensor> in;
    in.emplace_back(model_inputs_[0].Name(), model_inputs_[0].DataType(), shape, input.data(),
                    input.size() * sizeof(float));
    std::vector<mindspore::MSTensor> out;
    mindspore::Status ret = model_.Predict(in, &out);
    if (!ret.IsOk()) {
      *error = "Predict failed: " + ret.ToString();
      return false;
    }
    outputs->resize(out.size());
    for (size_t i = 0; i < out.size(); ++i) {
      OutputBlob &blob = (*outputs)[i];
      blob.dtype = MsTypeName(out[i].DataType());
      blob.shape = out[i].Shape();
      std::shared_ptr<const void> data = out[i].Data();  // copies device memory to the host
      if (data == nullptr) {
        *error = "output " + std::to_string(i) + " has no data";
        return false;
      }
      const uint8_t *bytes = static_cast<const uint8_t *>(data.get());
      blob.bytes.assign(bytes, bytes + out[i].DataSize());
    }
    return true;
  }

 private:
  mindspore::Model model_;
  std::vector<mindspore::MSTensor> model_inputs_;
  std::vector<TensorInfo> inputs_;
};

}  // namespace

std::unique_ptr<Engine> CreateEngine() { return std::make_unique<AscendEngine>(); }

}  // namespace infer
