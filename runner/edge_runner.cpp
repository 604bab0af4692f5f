// edge_runner: benchmark one ExecuTorch .pte on a device that has no Python.
//
//   edge_runner ARTIFACT.pte [--threads N] [--runs N] [--warmup N] [--device-name NAME]
//               [--etdump PATH] [--input-file PATH] [--output-file PATH] [--emulated]
//
// Prints exactly one JSON line in the "edge.bench/1" schema (docs/native_runner.md) on stdout and
// exits 0; any failure prints the same schema with "ok": false and a one-line "error", exit 1
// (exit 2 for a bad command line). It follows edge/bench/device_runner.py (the Python runner) so
// the two are comparable: the first run is the first warm-up run (or the first timed run with
// --warmup 0), the manifest beside the artifact (<artifact>.json, optional here) gives precision and
// the expected output shapes, and percentiles are numpy's (linear interpolation).
//
// Built against the executorch wheel's own headers and shared libraries (runner/CMakeLists.txt).

#include <executorch/extension/module/module.h>
#include <executorch/extension/tensor/tensor.h>
#include <executorch/runtime/core/error.h>
#ifdef EDGE_WITH_ETDUMP
#include <executorch/devtools/etdump/etdump_flatcc.h>
#endif

#include <sys/resource.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#ifndef EDGE_RUNTIME_VERSION
#define EDGE_RUNTIME_VERSION ""
#endif

// The wheel ships libexecutorch_threadpool.so but not extension/threadpool/threadpool.h, so the two
// entry points used here are declared as that header declares them (ExecuTorch 1.5). Only member
// functions are called through the pointer get_threadpool() returns; nothing here constructs one.
namespace executorch::extension::threadpool {
class ThreadPool {
 public:
  bool _unsafe_reset_threadpool(uint32_t num_threads);
  size_t get_thread_count() const;
};
ThreadPool* get_threadpool();
}  // namespace executorch::extension::threadpool

namespace {

using executorch::extension::from_blob;
using executorch::extension::module::Module;
using executorch::runtime::Error;
using executorch::runtime::EValue;
using executorch::runtime::Tag;
using ScalarType = executorch::aten::ScalarType;

constexpr const char* kSchema = "edge.bench/1";
constexpr uint64_t kSeed = 0;

struct RunnerError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

std::string first_line(const std::string& s) {
  auto end = s.find('\n');
  return end == std::string::npos ? s : s.substr(0, end);
}

std::string basename_of(const std::string& path) {
  std::string p = path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  auto slash = p.rfind('/');
  return slash == std::string::npos ? p : p.substr(slash + 1);
}

std::string error_name(Error e) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s (0x%x)", executorch::runtime::to_string(e), static_cast<unsigned>(e));
  return buf;
}

// ---------------------------------------------------------------------------------------------
// JSON: a small reader for the manifest, a writer for the result.

struct Json {
  enum Kind { Null, Bool, Number, String, Array, Object } kind = Null;
  bool boolean = false;
  double number = 0;
  std::string str;
  std::vector<Json> items;
  std::vector<std::pair<std::string, Json>> members;

  const Json* get(const std::string& key) const {
    if (kind != Object) return nullptr;
    for (const auto& m : members)
      if (m.first == key) return &m.second;
    return nullptr;
  }
};

class JsonReader {
 public:
  explicit JsonReader(const std::string& text) : s_(text) {}

  Json document() {
    Json v = value(0);
    skip_ws();
    if (i_ != s_.size()) fail("trailing characters");
    return v;
  }

 private:
  const std::string& s_;
  size_t i_ = 0;

  [[noreturn]] void fail(const std::string& what) const {
    throw RunnerError("invalid JSON at byte " + std::to_string(i_) + ": " + what);
  }
  void skip_ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\r' || s_[i_] == '\t')) ++i_;
  }
  bool literal(const char* word) {
    size_t n = std::strlen(word);
    if (s_.compare(i_, n, word) != 0) return false;
    i_ += n;
    return true;
  }
  Json value(int depth) {
    if (depth > 64) fail("nested too deeply");
    skip_ws();
    if (i_ >= s_.size()) fail("unexpected end");
    Json v;
    char c = s_[i_];
    if (c == '{') {
      v.kind = Json::Object;
      ++i_;
      skip_ws();
      if (i_ < s_.size() && s_[i_] == '}') return ++i_, v;
      for (;;) {
        skip_ws();
        if (i_ >= s_.size() || s_[i_] != '"') fail("expected a key");
        std::string key = string();
        skip_ws();
        if (i_ >= s_.size() || s_[i_++] != ':') fail("expected ':'");
        v.members.emplace_back(std::move(key), value(depth + 1));
        skip_ws();
        if (i_ < s_.size() && s_[i_] == ',') { ++i_; continue; }
        if (i_ < s_.size() && s_[i_] == '}') return ++i_, v;
        fail("expected ',' or '}'");
      }
    }
    if (c == '[') {
      v.kind = Json::Array;
      ++i_;
      skip_ws();
      if (i_ < s_.size() && s_[i_] == ']') return ++i_, v;
      for (;;) {
        v.items.push_back(value(depth + 1));
        skip_ws();
        if (i_ < s_.size() && s_[i_] == ',') { ++i_; continue; }
        if (i_ < s_.size() && s_[i_] == ']') return ++i_, v;
        fail("expected ',' or ']'");
      }
    }
    if (c == '"') {
      v.kind = Json::String;
      v.str = string();
      return v;
    }
    if (literal("true")) { v.kind = Json::Bool; v.boolean = true; return v; }
    if (literal("false")) { v.kind = Json::Bool; return v; }
    if (literal("null")) return v;
    const char* start = s_.c_str() + i_;
    char* end = nullptr;
    v.number = std::strtod(start, &end);
    if (end == start) fail("unexpected character");
    v.kind = Json::Number;
    i_ += static_cast<size_t>(end - start);
    return v;
  }
  static void utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }
  uint32_t hex4() {
    if (i_ + 4 > s_.size()) fail("short \\u escape");
    uint32_t cp = 0;
    for (int k = 0; k < 4; ++k) {
      char h = s_[i_++];
      cp <<= 4;
      if (h >= '0' && h <= '9') cp |= static_cast<uint32_t>(h - '0');
      else if (h >= 'a' && h <= 'f') cp |= static_cast<uint32_t>(h - 'a' + 10);
      else if (h >= 'A' && h <= 'F') cp |= static_cast<uint32_t>(h - 'A' + 10);
      else fail("bad \\u escape");
    }
    return cp;
  }
  std::string string() {
    ++i_;  // opening quote
    std::string out;
    while (i_ < s_.size()) {
      char c = s_[i_++];
      if (c == '"') return out;
      if (c != '\\') { out += c; continue; }
      if (i_ >= s_.size()) break;
      char e = s_[i_++];
      switch (e) {
        case '"': case '\\': case '/': out += e; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          uint32_t cp = hex4();
          if (cp >= 0xD800 && cp < 0xDC00 && s_.compare(i_, 2, "\\u") == 0) {
            i_ += 2;
            uint32_t lo = hex4();
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          }
          utf8(out, cp);
          break;
        }
        default: fail("bad escape");
      }
    }
    fail("unterminated string");
  }
};

std::string quote(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

std::string opt_str(const std::optional<std::string>& v) { return v ? quote(*v) : "null"; }
std::string opt_bool(const std::optional<bool>& v) { return v ? (*v ? "true" : "false") : "null"; }
std::string opt_num(const std::optional<double>& v) {
  if (!v || !std::isfinite(*v)) return "null";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.3f", *v);
  return buf;
}

// ---------------------------------------------------------------------------------------------
// sha256 (FIPS 180-4), to tie the result to the exact file that ran.

class Sha256 {
 public:
  void update(const uint8_t* data, size_t n) {
    for (size_t k = 0; k < n; ++k) {
      block_[fill_++] = data[k];
      if (fill_ == 64) { compress(); fill_ = 0; }
    }
    bits_ += static_cast<uint64_t>(n) * 8;
  }
  std::string hex() {
    uint64_t bits = bits_;
    uint8_t pad = 0x80;
    update(&pad, 1);
    uint8_t zero = 0;
    while (fill_ != 56) update(&zero, 1);
    for (int k = 7; k >= 0; --k) {
      uint8_t b = static_cast<uint8_t>(bits >> (8 * k));
      update(&b, 1);
    }
    char out[65];
    for (int k = 0; k < 8; ++k) std::snprintf(out + 8 * k, 9, "%08x", h_[k]);
    return std::string(out, 64);
  }

 private:
  std::array<uint32_t, 8> h_{0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                             0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  std::array<uint8_t, 64> block_{};
  size_t fill_ = 0;
  uint64_t bits_ = 0;

  static uint32_t rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }
  void compress() {
    static const uint32_t K[64] = {
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};
    uint32_t w[64];
    for (int t = 0; t < 16; ++t)
      w[t] = (uint32_t(block_[4 * t]) << 24) | (uint32_t(block_[4 * t + 1]) << 16) |
             (uint32_t(block_[4 * t + 2]) << 8) | uint32_t(block_[4 * t + 3]);
    for (int t = 16; t < 64; ++t) {
      uint32_t s0 = rotr(w[t - 15], 7) ^ rotr(w[t - 15], 18) ^ (w[t - 15] >> 3);
      uint32_t s1 = rotr(w[t - 2], 17) ^ rotr(w[t - 2], 19) ^ (w[t - 2] >> 10);
      w[t] = w[t - 16] + s0 + w[t - 7] + s1;
    }
    uint32_t a = h_[0], b = h_[1], c = h_[2], d = h_[3], e = h_[4], f = h_[5], g = h_[6], h = h_[7];
    for (int t = 0; t < 64; ++t) {
      uint32_t t1 = h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K[t] + w[t];
      uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
      h = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
    }
    h_[0] += a; h_[1] += b; h_[2] += c; h_[3] += d; h_[4] += e; h_[5] += f; h_[6] += g; h_[7] += h;
  }
};

std::string sha256_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw RunnerError("cannot read " + basename_of(path));
  Sha256 sha;
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    sha.update(reinterpret_cast<const uint8_t*>(buf.data()), static_cast<size_t>(in.gcount()));
  }
  return sha.hex();
}

// ---------------------------------------------------------------------------------------------
// Files.

bool is_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return static_cast<bool>(in);
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw RunnerError("cannot read " + basename_of(path));
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Written to PATH.tmp, then renamed: a failed run leaves no half-written file.
void write_atomic(const std::string& path, const void* data, size_t n) {
  std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) throw RunnerError("cannot write " + path + ": " + std::strerror(errno));
  bool good = std::fwrite(data, 1, n, f) == n;
  good = (std::fclose(f) == 0) && good;
  if (!good || std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    throw RunnerError("cannot write " + path);
  }
}

// ---------------------------------------------------------------------------------------------
// The device, read on the device itself.

std::string trim(const std::string& s) {
  size_t a = s.find_first_not_of(" \t\r\n");
  if (a == std::string::npos) return "";
  size_t b = s.find_last_not_of(" \t\r\n");
  return s.substr(a, b - a + 1);
}

struct Device {
  std::string name;
  std::optional<std::string> cpu;
  std::optional<double> cores;
  std::optional<std::string> os;
  std::optional<std::string> arch;
  bool emulated = false;
};

// qemu-user (7.x) passes the host's /proc/cpuinfo through: an aarch64 binary that reads an x86
// vendor line there is being emulated. Best effort only (newer qemu fakes the file), which is why
// the host also says so explicitly (--emulated / EDGE_EMULATED=1).
bool cpuinfo_says_emulated(const std::string& info) {
#if defined(__aarch64__) || defined(__arm__)
  return info.find("GenuineIntel") != std::string::npos || info.find("AuthenticAMD") != std::string::npos;
#else
  (void)info;
  return false;
#endif
}

Device device_facts(const std::optional<std::string>& name, bool emulated_flag) {
  Device d;
  if (name) {
    d.name = *name;
  } else {
    char host[256] = {0};
    d.name = gethostname(host, sizeof host - 1) == 0 ? host : "unknown";
  }
  std::string info;
  try {
    info = read_text("/proc/cpuinfo");
  } catch (const RunnerError&) {
    info.clear();
  }
  for (const char* key : {"model name", "Hardware", "Processor", "cpu model", "uarch"}) {
    std::istringstream lines(info);
    std::string line;
    while (std::getline(lines, line)) {
      auto colon = line.find(':');
      if (colon == std::string::npos) continue;
      if (trim(line.substr(0, colon)) == key && !trim(line.substr(colon + 1)).empty()) {
        d.cpu = trim(line.substr(colon + 1));
        break;
      }
    }
    if (d.cpu) break;
  }
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  if (n > 0) d.cores = static_cast<double>(n);
  struct utsname u;
  if (uname(&u) == 0) {
    d.os = std::string(u.sysname) + " " + u.release;
    d.arch = u.machine;
  }
  const char* env = std::getenv("EDGE_EMULATED");
  d.emulated = emulated_flag || (env && std::string(env) == "1") || cpuinfo_says_emulated(info);
  return d;
}

std::optional<double> peak_rss_mb() {
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) != 0) return std::nullopt;
  return static_cast<double>(ru.ru_maxrss) / 1024.0;  // Linux: kilobytes
}

// ---------------------------------------------------------------------------------------------
// Options and result.

struct Options {
  std::string artifact;
  long threads = 2;
  long runs = 20;
  long warmup = 3;
  std::optional<std::string> device_name;
  std::optional<std::string> etdump;
  std::optional<std::string> input_file;
  std::optional<std::string> output_file;
  bool emulated = false;
};

struct Latency {
  std::optional<double> p50, p90, min, max, mean;
};

struct Result {
  std::string artifact;
  std::optional<std::string> sha256, precision;
  std::string target = "executorch";
  std::optional<std::string> runtime_version;
  long threads = 0, warmup = 0, runs = 0;
  std::optional<double> load_ms, first_run_ms, rss_mb;
  Latency latency;
  std::optional<std::vector<std::vector<long>>> shapes;
  std::optional<bool> finite, shape_ok;
  Device device;
  bool ok = false;
  std::optional<std::string> error;

  std::string to_json() const {
    std::ostringstream o;
    o << "{\"schema\":" << quote(kSchema) << ",\"artifact\":" << quote(artifact)
      << ",\"artifact_sha256\":" << opt_str(sha256) << ",\"target\":" << quote(target)
      << ",\"precision\":" << opt_str(precision) << ",\"runner\":\"native\",\"runtime\":\"executorch\""
      << ",\"runtime_version\":" << opt_str(runtime_version) << ",\"threads\":" << threads
      << ",\"warmup\":" << warmup << ",\"runs\":" << runs << ",\"load_ms\":" << opt_num(load_ms)
      << ",\"first_run_ms\":" << opt_num(first_run_ms) << ",\"latency_ms\":{\"p50\":" << opt_num(latency.p50)
      << ",\"p90\":" << opt_num(latency.p90) << ",\"min\":" << opt_num(latency.min)
      << ",\"max\":" << opt_num(latency.max) << ",\"mean\":" << opt_num(latency.mean) << "}"
      << ",\"peak_rss_mb\":" << opt_num(rss_mb) << ",\"output\":{\"shapes\":";
    if (shapes) {
      o << "[";
      for (size_t k = 0; k < shapes->size(); ++k) {
        o << (k ? "," : "") << "[";
        for (size_t j = 0; j < (*shapes)[k].size(); ++j) o << (j ? "," : "") << (*shapes)[k][j];
        o << "]";
      }
      o << "]";
    } else {
      o << "null";
    }
    o << ",\"finite\":" << opt_bool(finite) << ",\"shape_ok\":" << opt_bool(shape_ok) << "}"
      << ",\"device\":{\"name\":" << quote(device.name) << ",\"cpu\":" << opt_str(device.cpu)
      << ",\"cores\":" << (device.cores ? std::to_string(static_cast<long>(*device.cores)) : "null")
      << ",\"os\":" << opt_str(device.os) << ",\"arch\":" << opt_str(device.arch)
      << ",\"emulated\":" << (device.emulated ? "true" : "false") << "}"
      << ",\"ok\":" << (ok ? "true" : "false") << ",\"error\":" << opt_str(error) << "}";
    return o.str();
  }
};

double round3(double v) { return std::round(v * 1000.0) / 1000.0; }

// numpy.percentile's default (linear interpolation between closest ranks), on sorted values.
double percentile(const std::vector<double>& sorted, double q) {
  double idx = q / 100.0 * static_cast<double>(sorted.size() - 1);
  size_t lo = static_cast<size_t>(std::floor(idx));
  size_t hi = std::min(lo + 1, sorted.size() - 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (idx - static_cast<double>(lo));
}

// A deterministic input: seeded standard normal (the scale of a normalised image) from splitmix64 and
// Box-Muller. Not numpy's stream (the Python runner's input differs); --input-file gives exact data.
std::vector<float> seeded_normal(size_t n, uint64_t seed) {
  uint64_t state = seed;
  auto next = [&state]() {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  };
  auto uniform = [&next]() { return (static_cast<double>(next() >> 11) + 0.5) * (1.0 / 9007199254740992.0); };
  std::vector<float> out(n);
  for (size_t k = 0; k < n; k += 2) {
    double r = std::sqrt(-2.0 * std::log(uniform()));
    double t = 6.283185307179586 * uniform();
    out[k] = static_cast<float>(r * std::cos(t));
    if (k + 1 < n) out[k + 1] = static_cast<float>(r * std::sin(t));
  }
  return out;
}

std::vector<float> read_floats(const std::string& path, size_t numel) {
  std::string bytes = read_text(path);
  if (bytes.size() != numel * sizeof(float))
    throw RunnerError("--input-file " + basename_of(path) + " has " + std::to_string(bytes.size()) +
                      " bytes; the input tensor needs " + std::to_string(numel * sizeof(float)) +
                      " (raw float32 little-endian, " + std::to_string(numel) + " values)");
  std::vector<float> out(numel);
  std::memcpy(out.data(), bytes.data(), bytes.size());
  return out;
}

long parse_long(const std::string& flag, const std::string& text) {
  char* end = nullptr;
  errno = 0;
  long v = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || errno != 0) throw RunnerError(flag + " needs an integer, got '" + text + "'");
  return v;
}

const char* kUsage =
    "usage: edge_runner ARTIFACT.pte [--threads N] [--runs N] [--warmup N] [--device-name NAME]\n"
    "                   [--etdump PATH] [--input-file PATH] [--output-file PATH] [--emulated]\n"
    "Benchmark one ExecuTorch program; prints one JSON line (schema edge.bench/1).\n"
    "  --threads N       ExecuTorch thread pool size (0: the runtime's default) [2]\n"
    "  --runs N          timed runs [20]\n"
    "  --warmup N        warm-up runs, the first run included [3]\n"
    "  --device-name S   device label for the result [hostname]\n"
    "  --etdump PATH     write an ETDump profile of all runs (timings then include the tracer)\n"
    "  --input-file P    raw float32 little-endian input (default: seeded standard normal)\n"
    "  --output-file P   write the last run's outputs, concatenated, as raw float32 little-endian\n"
    "  --emulated        mark the run as emulated (qemu-user); also EDGE_EMULATED=1\n";

Options parse_args(int argc, char** argv) {
  Options o;
  for (int k = 1; k < argc; ++k) {
    std::string a = argv[k];
    auto value = [&](const std::string& flag) -> std::string {
      if (k + 1 >= argc) throw RunnerError(flag + " needs a value");
      return argv[++k];
    };
    if (a == "--threads") o.threads = parse_long(a, value(a));
    else if (a == "--runs") o.runs = parse_long(a, value(a));
    else if (a == "--warmup") o.warmup = parse_long(a, value(a));
    else if (a == "--device-name") o.device_name = value(a);
    else if (a == "--etdump") o.etdump = value(a);
    else if (a == "--input-file") o.input_file = value(a);
    else if (a == "--output-file") o.output_file = value(a);
    else if (a == "--emulated") o.emulated = true;
    else if (a.size() > 1 && a[0] == '-') throw RunnerError("unknown option " + a);
    else if (o.artifact.empty()) o.artifact = a;
    else throw RunnerError("one artifact only (got " + o.artifact + " and " + a + ")");
  }
  if (o.artifact.empty()) throw RunnerError("no artifact given");
  return o;
}

// ---------------------------------------------------------------------------------------------
// The benchmark. Fills `res` as it goes, so what was measured before a failure stays reported.

void bench(const Options& opt, Result& res) {
  if (opt.runs < 1 || opt.warmup < 0 || opt.threads < 0)
    throw RunnerError("--runs must be at least 1, --warmup and --threads at least 0");
  if (!is_file(opt.artifact)) throw RunnerError("artifact " + res.artifact + " does not exist on the device");

  res.sha256 = sha256_file(opt.artifact);
  std::optional<std::vector<std::vector<long>>> expected;
  std::optional<size_t> manifest_inputs;
  std::string manifest_path = opt.artifact + ".json";
  if (is_file(manifest_path)) {  // optional: without it the program's own output meta is the reference
    Json man;
    try {
      man = JsonReader(read_text(manifest_path)).document();
    } catch (const RunnerError& e) {
      throw RunnerError("manifest " + basename_of(manifest_path) + " is unreadable: " + e.what());
    }
    const Json* io = man.get("io");
    if (!io || io->kind != Json::Object)
      throw RunnerError("manifest " + basename_of(manifest_path) + " has no 'io' section (not written by `edge export`?)");
    if (const Json* p = man.get("precision"); p && p->kind == Json::String) res.precision = p->str;
    if (const Json* t = man.get("target"); t && t->kind == Json::String) res.target = t->str;
    if (const Json* s = man.get("artifact_sha256"); s && s->kind == Json::String && s->str != *res.sha256)
      throw RunnerError(res.artifact + " does not match its manifest (sha256 " + res.sha256->substr(0, 12) +
                        "... vs " + s->str.substr(0, 12) + "...): corrupt or truncated copy");
    if (const Json* ins = io->get("inputs"); ins && ins->kind == Json::Array) manifest_inputs = ins->items.size();
    if (const Json* outs = io->get("outputs"); outs && outs->kind == Json::Array) {
      expected.emplace();
      for (const auto& o : outs->items) {
        std::vector<long> shape;
        if (const Json* sh = o.get("shape"); sh && sh->kind == Json::Array)
          for (const auto& d : sh->items) shape.push_back(static_cast<long>(d.number));
        expected->push_back(shape);
      }
    }
  }

  if (opt.threads > 0) {
    auto* pool = executorch::extension::threadpool::get_threadpool();
    if (!pool || !pool->_unsafe_reset_threadpool(static_cast<uint32_t>(opt.threads)))
      throw RunnerError("cannot set ExecuTorch's thread pool to " + std::to_string(opt.threads) + " threads");
  }

  std::unique_ptr<executorch::runtime::EventTracer> tracer;
  if (opt.etdump) {
#ifdef EDGE_WITH_ETDUMP
    tracer = std::make_unique<executorch::etdump::ETDumpGen>();
#else
    throw RunnerError("--etdump: this build has no ETDump library (the wheel shipped none)");
#endif
  }

  using Clock = std::chrono::steady_clock;
  auto ms_since = [](Clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  };
  auto t0 = Clock::now();
  Module module(opt.artifact, Module::LoadMode::Mmap, std::move(tracer));
  Error err = module.load_method("forward");
  double load_ms = ms_since(t0);
  if (err != Error::Ok) {
    // Tell a file the program loader rejects from a program without a usable forward method.
    Error perr = module.load();
    if (perr != Error::Ok)
      throw RunnerError(res.artifact + " is not a loadable ExecuTorch program: " + error_name(perr));
    throw RunnerError(res.artifact + ": cannot load method 'forward': " + error_name(err));
  }
  res.load_ms = round3(load_ms);

  auto meta = module.method_meta("forward");
  if (!meta.ok()) throw RunnerError("no metadata for 'forward': " + error_name(meta.error()));
  size_t n_in = meta->num_inputs();
  if (n_in != 1)
    throw RunnerError("the program's forward takes " + std::to_string(n_in) +
                      " inputs; edge_runner feeds exactly one image tensor");
  if (manifest_inputs && *manifest_inputs != n_in)
    throw RunnerError("the manifest lists " + std::to_string(*manifest_inputs) + " inputs; the program takes " +
                      std::to_string(n_in));
  auto tag = meta->input_tag(0);
  if (!tag.ok() || *tag != Tag::Tensor) throw RunnerError("the program's input is not a tensor");
  auto in_meta = meta->input_tensor_meta(0);
  if (!in_meta.ok()) throw RunnerError("no input tensor metadata: " + error_name(in_meta.error()));
  if (in_meta->scalar_type() != ScalarType::Float)
    throw RunnerError(std::string("the program's input is ") + executorch::runtime::toString(in_meta->scalar_type()) +
                      "; edge_runner feeds float32");
  std::vector<executorch::aten::SizesType> sizes(in_meta->sizes().begin(), in_meta->sizes().end());
  size_t numel = 1;
  for (auto s : sizes) numel *= static_cast<size_t>(s);
  std::vector<float> data = opt.input_file ? read_floats(*opt.input_file, numel) : seeded_normal(numel, kSeed);
  auto input = from_blob(data.data(), sizes, ScalarType::Float);
  std::vector<EValue> inputs{EValue(*input)};

  std::vector<EValue> outs;
  auto run = [&]() {
    auto r = module.execute("forward", inputs);
    if (!r.ok()) throw RunnerError("inference failed: " + error_name(r.error()));
    outs = std::move(*r);
  };
  t0 = Clock::now();
  run();
  double first_ms = ms_since(t0);
  for (long k = 1; k < opt.warmup; ++k) run();
  std::vector<double> times;
  if (opt.warmup == 0) times.push_back(first_ms);
  while (static_cast<long>(times.size()) < opt.runs) {
    t0 = Clock::now();
    run();
    times.push_back(ms_since(t0));
  }
  res.first_run_ms = round3(first_ms);
  std::vector<double> sorted = times;
  std::sort(sorted.begin(), sorted.end());
  double sum = 0;
  for (double t : times) sum += t;
  res.latency = {round3(percentile(sorted, 50)), round3(percentile(sorted, 90)), round3(sorted.front()),
                 round3(sorted.back()), round3(sum / static_cast<double>(times.size()))};
  res.rss_mb = peak_rss_mb();
  if (res.rss_mb) res.rss_mb = round3(*res.rss_mb);

  std::vector<std::vector<long>> shapes;
  bool finite = true;
  std::vector<float> flat;
  for (size_t k = 0; k < outs.size(); ++k) {
    if (!outs[k].isTensor()) throw RunnerError("output " + std::to_string(k) + " is not a tensor");
    const auto& t = outs[k].toTensor();
    shapes.emplace_back(t.sizes().begin(), t.sizes().end());
    if (t.scalar_type() == ScalarType::Float) {
      const float* p = t.const_data_ptr<float>();
      for (ssize_t j = 0; j < t.numel(); ++j) finite = finite && std::isfinite(p[j]);
      if (opt.output_file) flat.insert(flat.end(), p, p + t.numel());
    } else if (opt.output_file) {
      throw RunnerError("--output-file writes float32 outputs; output " + std::to_string(k) + " is " +
                        executorch::runtime::toString(t.scalar_type()));
    }
  }
  if (!expected) {  // no manifest: the program's declared output shapes
    expected.emplace();
    for (size_t k = 0; k < meta->num_outputs(); ++k) {
      auto om = meta->output_tensor_meta(k);
      expected->emplace_back();
      if (om.ok()) expected->back().assign(om->sizes().begin(), om->sizes().end());
    }
  }
  bool shape_ok = !expected->empty() && shapes == *expected;
  res.shapes = shapes;
  res.finite = finite;
  res.shape_ok = shape_ok;

  if (opt.output_file) write_atomic(*opt.output_file, flat.data(), flat.size() * sizeof(float));
#ifdef EDGE_WITH_ETDUMP
  if (opt.etdump) {
    auto* gen = static_cast<executorch::etdump::ETDumpGen*>(module.event_tracer());
    executorch::etdump::ETDumpResult dump = gen->get_etdump_data();
    if (!dump.buf || dump.size == 0) throw RunnerError("the ETDump is empty");
    try {
      write_atomic(*opt.etdump, dump.buf, dump.size);
    } catch (const RunnerError&) {
      std::free(dump.buf);
      throw;
    }
    std::free(dump.buf);
  }
#endif

  std::vector<std::string> problems;
  if (!finite) problems.push_back("outputs are not finite (NaN/inf)");
  if (!shape_ok) {
    std::ostringstream m;
    m << "output shapes differ from the " << (is_file(manifest_path) ? "manifest's" : "program's");
    problems.push_back(m.str());
  }
  res.ok = problems.empty();
  if (!problems.empty()) {
    std::string e = problems[0];
    for (size_t k = 1; k < problems.size(); ++k) e += "; " + problems[k];
    res.error = e;
  }
}

}  // namespace

int main(int argc, char** argv) {
  for (int k = 1; k < argc; ++k) {
    if (std::string(argv[k]) == "--help" || std::string(argv[k]) == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
  }
  Result res;
  std::string version = EDGE_RUNTIME_VERSION;
  if (!version.empty()) res.runtime_version = version;
  Options opt;
  int status = 1;
  try {
    opt = parse_args(argc, argv);
  } catch (const RunnerError& e) {
    res.error = first_line(e.what());
    res.device = device_facts(std::nullopt, false);
    std::fputs(kUsage, stderr);
    std::printf("%s\n", res.to_json().c_str());
    return 2;
  }
  res.artifact = basename_of(opt.artifact);
  res.threads = opt.threads;
  res.warmup = opt.warmup;
  res.runs = opt.runs;
  res.device = device_facts(opt.device_name, opt.emulated);
  try {
    bench(opt, res);
    status = res.ok ? 0 : 1;
  } catch (const std::exception& e) {  // RunnerError, and anything the runtime's C++ API throws
    res.ok = false;
    res.error = first_line(e.what());
  }
  std::printf("%s\n", res.to_json().c_str());
  std::fflush(stdout);
  return status;
}
