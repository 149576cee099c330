/**
 * The model record an exported model carries (src/deploy/record.py writes it): class names, input size, eval
 * preprocessing (resize, crop, mean/std), output dtype, calibration temperature. An ONNX file holds it in its
 * metadata under the key "model_record" (the ORT engine reads it); a MINDIR/AIR file has it in the sidecar
 * "<model file>.json". The app preprocesses from it; command-line flags only override.
 */
#ifndef CSPDARKNET53_INFER_RECORD_H_
#define CSPDARKNET53_INFER_RECORD_H_

#include <string>
#include <vector>

namespace infer {

constexpr const char *kRecordKey = "model_record";

struct ModelRecord {
  bool present = false;
  std::string where;                     // the file (and key) it was read from
  std::string arch;
  int num_classes = 0;
  std::vector<std::string> class_names;  // empty: the record has none
  int height = 0;                        // preprocess.image_size = the network input
  int width = 0;
  std::vector<int> resize;               // eval Resize argument: [shorter side] or [height, width]
  std::string eval_resize;               // "squash" | "shorter" (informational; `resize` decides)
  double crop_pct = 0.0;
  float mean[3] = {0, 0, 0};
  float stdev[3] = {1, 1, 1};
  std::string output_dtype;
  double temperature = 0.0;              // > 0: calibrated; 0: no calibration in the record
};

// Parses the record's JSON text. On failure returns false and sets *error (naming `where`).
bool ParseModelRecord(const std::string &json, const std::string &where, ModelRecord *record, std::string *error);

// Reads the sidecar "<model_path>.json" when it exists. Returns false only for a sidecar that exists but cannot
// be read or parsed; with no sidecar, returns true and leaves record->present false.
bool ReadSidecarRecord(const std::string &model_path, ModelRecord *record, std::string *error);

// One line for the log: arch, classes (a few names), input, preprocessing, temperature.
std::string DescribeRecord(const ModelRecord &record);

}  // namespace infer

#endif  // CSPDARKNET53_INFER_RECORD_H_
