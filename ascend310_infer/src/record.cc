/**
 * The model record: a small JSON reader (objects, arrays, strings with \u escapes, numbers, literals) and the
 * record's fields. No std::filesystem and no third-party JSON library, so it builds under either libstdc++ ABI.
 */
#include "inc/record.h"

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <utility>

#include "inc/utils.h"

namespace infer {
namespace {

struct Json {
  enum Type { kNull, kBool, kNumber, kString, kArray, kObject } type = kNull;
  bool boolean = false;
  double number = 0.0;
  std::string text;
  std::vector<Json> items;
  std::vector<std::pair<std::string, Json>> members;

  const Json *Get(const std::string &key) const {
    if (type != kObject) return nullptr;
    for (const auto &m : members) {
      if (m.first == key) return &m.second;
    }
    return nullptr;
  }
};

class Parser {
 public:
  explicit Parser(const std::string &s) : s_(s) {}

  bool Parse(Json *out, std::string *error) {
    if (!Value(out, 0)) {
      *error = error_ + " at byte " + std::to_string(pos_);
      return false;
    }
    Space();
    if (pos_ != s_.size()) {
      *error = "unexpected text after the JSON value at byte " + std::to_string(pos_);
      return false;
    }
    return true;
  }

 private:
  const std::string &s_;
  size_t pos_ = 0;
  std::string error_;

  bool Fail(const std::string &message) {
    error_ = message;
    return false;
  }

  void Space() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) ++pos_;
  }

  bool Literal(const char *word) {
    size_t n = std::char_traits<char>::length(word);
    if (s_.compare(pos_, n, word) != 0) return false;
    pos_ += n;
    return true;
  }

  bool Value(Json *out, int depth) {
    if (depth > 64) return Fail("JSON nested too deeply");
    Space();
    if (pos_ >= s_.size()) return Fail("unexpected end of JSON");
    char c = s_[pos_];
    if (c == '{') return Object(out, depth);
    if (c == '[') return Array(out, depth);
    if (c == '"') {
      out->type = Json::kString;
      return String(&out->text);
    }
    if (Literal("true")) {
      out->type = Json::kBool;
      out->boolean = true;
      return true;
    }
    if (Literal("false")) {
      out->type = Json::kBool;
      return true;
    }
    if (Literal("null")) {
      out->type = Json::kNull;
      return true;
    }
    if (c == '-' || (c >= '0' && c <= '9')) return Number(out);
    return Fail(std::string("unexpected character '") + c + "'");
  }

  bool Number(Json *out) {
    const char *start = s_.c_str() + pos_;
    char *end = nullptr;
    double v = std::strtod(start, &end);
    if (end == start) return Fail("bad number");
    pos_ += static_cast<size_t>(end - start);
    out->type = Json::kNumber;
    out->number = v;
    return true;
  }

  static void AppendUtf8(unsigned cp, std::string *out) {
    if (cp < 0x80) {
      out->push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
      out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
  }

  bool Hex4(unsigned *cp) {
    if (pos_ + 4 > s_.size()) return Fail("short \\u escape");
    unsigned v = 0;
    for (int i = 0; i < 4; ++i) {
      char h = s_[pos_++];
      v <<= 4;
      if (h >= '0' && h <= '9') v |= static_cast<unsigned>(h - '0');
      else if (h >= 'a' && h <= 'f') v |= static_cast<unsigned>(h - 'a' + 10);
      else if (h >= 'A' && h <= 'F') v |= static_cast<unsigned>(h - 'A' + 10);
      else return Fail("bad \\u escape");
    }
    *cp = v;
    return true;
  }

  bool String(std::string *out) {
    ++pos_;  // opening quote
    out->clear();
    while (pos_ < s_.size()) {
      char c = s_[pos_++];
      if (c == '"') return true;
      if (static_cast<unsigned char>(c) < 0x20) return Fail("control character in a string");
      if (c != '\\') {
        out->push_back(c);
        continue;
      }
      if (pos_ >= s_.size()) break;
      char e = s_[pos_++];
      switch (e) {
        case '"': out->push_back('"'); break;
        case '\\': out->push_back('\\'); break;
        case '/': out->push_back('/'); break;
        case 'b': out->push_back('\b'); break;
        case 'f': out->push_back('\f'); break;
        case 'n': out->push_back('\n'); break;
        case 'r': out->push_back('\r'); break;
        case 't': out->push_back('\t'); break;
        case 'u': {
          unsigned cp = 0;
          if (!Hex4(&cp)) return false;
          if (cp >= 0xD800 && cp <= 0xDBFF) {  // a surrogate pair
            unsigned low = 0;
            if (pos_ + 2 > s_.size() || s_[pos_] != '\\' || s_[pos_ + 1] != 'u') return Fail("lone high surrogate");
            pos_ += 2;
            if (!Hex4(&low) || low < 0xDC00 || low > 0xDFFF) return Fail("bad surrogate pair");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
          } else if (cp >= 0xDC80 && cp <= 0xDCFF) {
            // Python's surrogateescape: a byte of a name that is not UTF-8; give the byte back
            out->push_back(static_cast<char>(cp - 0xDC00));
            break;
          } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            return Fail("lone low surrogate");
          }
          AppendUtf8(cp, out);
          break;
        }
        default:
          return Fail(std::string("bad escape \\") + e);
      }
    }
    return Fail("unterminated string");
  }

  bool Array(Json *out, int depth) {
    ++pos_;
    out->type = Json::kArray;
    Space();
    if (pos_ < s_.size() && s_[pos_] == ']') {
      ++pos_;
      return true;
    }
    while (true) {
      Json item;
      if (!Value(&item, depth + 1)) return false;
      out->items.push_back(std::move(item));
      Space();
      if (pos_ >= s_.size()) return Fail("unterminated array");
      if (s_[pos_] == ',') {
        ++pos_;
      } else if (s_[pos_] == ']') {
        ++pos_;
        return true;
      } else {
        return Fail("expected ',' or ']'");
      }
    }
  }

  bool Object(Json *out, int depth) {
    ++pos_;
    out->type = Json::kObject;
    Space();
    if (pos_ < s_.size() && s_[pos_] == '}') {
      ++pos_;
      return true;
    }
    while (true) {
      Space();
      if (pos_ >= s_.size() || s_[pos_] != '"') return Fail("expected a member name");
      std::string key;
      if (!String(&key)) return false;
      Space();
      if (pos_ >= s_.size() || s_[pos_] != ':') return Fail("expected ':'");
      ++pos_;
      Json value;
      if (!Value(&value, depth + 1)) return false;
      out->members.emplace_back(std::move(key), std::move(value));
      Space();
      if (pos_ >= s_.size()) return Fail("unterminated object");
      if (s_[pos_] == ',') {
        ++pos_;
      } else if (s_[pos_] == '}') {
        ++pos_;
        return true;
      } else {
        return Fail("expected ',' or '}'");
      }
    }
  }
};

bool IsPositiveInt(const Json *v) {
  return v != nullptr && v->type == Json::kNumber && v->number >= 1 && v->number <= 1e9 &&
         std::floor(v->number) == v->number;
}

bool IntList(const Json *v, size_t min_n, size_t max_n, std::vector<int> *out) {
  if (v == nullptr || v->type != Json::kArray || v->items.size() < min_n || v->items.size() > max_n) return false;
  out->clear();
  for (const Json &item : v->items) {
    if (!IsPositiveInt(&item)) return false;
    out->push_back(static_cast<int>(item.number));
  }
  return true;
}

bool FloatTriple(const Json *v, float out[3], bool positive) {
  if (v == nullptr || v->type != Json::kArray || v->items.size() != 3) return false;
  for (int i = 0; i < 3; ++i) {
    if (v->items[i].type != Json::kNumber || (positive && !(v->items[i].number > 0))) return false;
    out[i] = static_cast<float>(v->items[i].number);
  }
  return true;
}

}  // namespace

bool ParseModelRecord(const std::string &json, const std::string &where, ModelRecord *record, std::string *error) {
  Json root;
  std::string why;
  if (!Parser(json).Parse(&root, &why)) {
    *error = where + ": the model record is not valid JSON (" + why + ")";
    return false;
  }
  auto bad = [&](const std::string &what) {
    *error = where + ": model record " + what;
    return false;
  };
  const Json *format = root.Get("format");
  if (format == nullptr || format->type != Json::kString || format->text != "cspdarknet53-model-record") {
    return bad("has no format \"cspdarknet53-model-record\"");
  }
  const Json *version = root.Get("version");
  if (version == nullptr || version->type != Json::kNumber || version->number != 1) {
    return bad("has a version this app does not read (it reads version 1)");
  }
  ModelRecord r;
  r.where = where;
  const Json *arch = root.Get("arch");
  if (arch != nullptr && arch->type == Json::kString) r.arch = arch->text;
  const Json *k = root.Get("num_classes");
  if (!IsPositiveInt(k)) return bad("num_classes is not a positive integer");
  r.num_classes = static_cast<int>(k->number);
  const Json *names = root.Get("class_names");
  if (names != nullptr && names->type == Json::kArray) {
    if (names->items.size() != static_cast<size_t>(r.num_classes)) {
      return bad("has " + std::to_string(names->items.size()) + " class names for " + std::to_string(r.num_classes) +
                 " classes");
    }
    for (const Json &n : names->items) {
      if (n.type != Json::kString) return bad("class_names holds a value that is not a string");
      r.class_names.push_back(n.text);
    }
  } else if (names != nullptr && names->type != Json::kNull) {
    return bad("class_names is neither a list nor null");
  }
  const Json *pre = root.Get("preprocess");
  if (pre == nullptr || pre->type != Json::kObject) return bad("has no preprocess object");
  std::vector<int> size;
  if (!IntList(pre->Get("image_size"), 2, 2, &size)) return bad("preprocess.image_size is not [height, width]");
  r.height = size[0];
  r.width = size[1];
  if (!IntList(pre->Get("resize"), 1, 2, &r.resize)) {
    return bad("preprocess.resize is not [shorter side] or [height, width]");
  }
  const Json *mode = pre->Get("eval_resize");
  if (mode != nullptr && mode->type == Json::kString) r.eval_resize = mode->text;
  const Json *crop_pct = pre->Get("crop_pct");
  if (crop_pct != nullptr && crop_pct->type == Json::kNumber) r.crop_pct = crop_pct->number;
  if (!FloatTriple(pre->Get("mean"), r.mean, false)) return bad("preprocess.mean is not 3 numbers");
  if (!FloatTriple(pre->Get("std"), r.stdev, true)) return bad("preprocess.std is not 3 numbers > 0");
  const Json *output = root.Get("output");
  if (output != nullptr && output->type == Json::kObject) {
    const Json *dtype = output->Get("dtype");
    if (dtype != nullptr && dtype->type == Json::kString) r.output_dtype = dtype->text;
  }
  const Json *cal = root.Get("calibration");
  if (cal != nullptr && cal->type == Json::kObject) {
    const Json *t = cal->Get("temperature");
    if (t == nullptr || t->type != Json::kNumber || !(t->number > 0) || !std::isfinite(t->number)) {
      return bad("calibration.temperature is not a number > 0");
    }
    r.temperature = t->number;
  }
  r.present = true;
  *record = std::move(r);
  return true;
}

bool ReadSidecarRecord(const std::string &model_path, ModelRecord *record, std::string *error) {
  const std::string path = model_path + ".json";
  if (!IsRegularFile(path)) return true;
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    *error = "cannot read the model record " + path;
    return false;
  }
  std::ostringstream text;
  text << in.rdbuf();
  return ParseModelRecord(text.str(), path, record, error);
}

std::string DescribeRecord(const ModelRecord &r) {
  std::ostringstream s;
  s << (r.arch.empty() ? std::string("?") : r.arch) << ", " << r.num_classes << " classes";
  if (r.class_names.empty()) {
    s << " (no class names)";
  } else {
    s << " (";
    for (size_t i = 0; i < r.class_names.size() && i < 3; ++i) s << (i ? ", " : "") << r.class_names[i];
    s << (r.class_names.size() > 3 ? ", ...)" : ")");
  }
  s << ", input " << r.height << "x" << r.width << ", "
    << (r.resize.size() == 1 ? "shorter side to " + std::to_string(r.resize[0])
                             : "squash to " + std::to_string(r.resize[0]) + "x" + std::to_string(r.resize[1]))
    << " then centre crop";
  if (r.temperature > 0) s << ", temperature " << r.temperature;
  return s.str();
}

}  // namespace infer
