/**
 * Shared, engine-independent parts of the CSPDarkNet53 inference app: flag parsing, image listing,
 * OpenCV preprocessing (the Python eval pipeline), result and timing files.
 */
#ifndef CSPDARKNET53_INFER_UTILS_H_
#define CSPDARKNET53_INFER_UTILS_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace infer {

struct Flags {
  std::string model_path;                   // --model_path (alias --mindir_path)
  std::string dataset_path = ".";           // --dataset_path: image folder (one level of class folders too) or one image
  std::string result_path = "./result_Files";  // --result_path: where <image stem>_<i>.bin are written
  std::string time_path = "./time_Result";  // --time_path: where test_perform_static.txt is written
  std::string dump_input_path;              // --dump_input_path: if set, also write each preprocessed input tensor
  int device_id = 0;                        // --device_id (Ascend only)
  int threads = 0;                          // --threads: CPU threads of the engine, 0 = engine default
  int resize = 0;                           // --resize: squash-resize side before the center crop (0: the record's)
  int crop = 0;                             // --crop: center-crop side = network input side (0: the record's)
};

// How an image becomes the network input: decode -> RGB -> Resize(resize) -> CenterCrop(crop_h, crop_w) ->
// (v - mean) / std on 0-255 values -> CHW float32. `resize` as MindSpore's vision.Resize takes it: one value
// resizes the shorter side to it (aspect kept, the longer side floor(long / short * value) in float32), two
// values squash to [height, width].
struct PreprocessSpec {
  int crop_h = 224;
  int crop_w = 224;
  std::vector<int> resize = {256, 256};
  float mean[3] = {123.675f, 116.28f, 103.53f};
  float stdev[3] = {58.395f, 57.12f, 57.375f};
};
std::string DescribeSpec(const PreprocessSpec &spec);

enum class ParseResult { kOk, kHelp, kError };

// Parses --name=value, --name value (a single leading '-' works too). On kError, *error says why.
ParseResult ParseFlags(int argc, char **argv, Flags *flags, std::string *error);
std::string Usage(const std::string &program);

// realpath(3); empty if the path does not exist.
std::string RealPath(const std::string &path);
bool IsDirectory(const std::string &path);
bool IsRegularFile(const std::string &path);
// mkdir -p
bool MakeDirs(const std::string &path, std::string *error);

// Image files (by extension, case-insensitive) directly in `path` and one level down (class folders),
// sorted by full path. `path` may also be a single file. Hidden entries are ignored; other files are
// counted in *skipped.
bool ListImages(const std::string &path, std::vector<std::string> *files, size_t *skipped, std::string *error);

// Basename without its last extension: "a/n01.v2.JPEG" -> "n01.v2" (the zoo cut at the first '.').
std::string ResultStem(const std::string &path);

// Decode -> RGB -> Resize (bilinear) -> center crop -> normalize -> CHW float32, as `spec` says. Same as the
// Python eval transforms (src/data/transforms.py eval_transforms), bit for bit.
bool Preprocess(const std::string &image_path, const PreprocessSpec &spec, std::vector<float> *chw,
                std::string *error);

// IEEE half -> float (for float16 logits).
float HalfToFloat(uint16_t h);

bool WriteBinary(const std::string &path, const void *data, size_t size, std::string *error);
bool WriteText(const std::string &path, const std::string &text, std::string *error);

// "float16", "float32", ...; bytes per element, 0 if unknown.
size_t DTypeSize(const std::string &dtype);
std::string ShapeToString(const std::vector<int64_t> &shape);

}  // namespace infer

#endif  // CSPDARKNET53_INFER_UTILS_H_
