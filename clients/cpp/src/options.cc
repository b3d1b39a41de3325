#include "options.h"

#include <charconv>
#include <cmath>
#include <map>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "errors.h"

namespace scratchnet {
namespace {

constexpr const char* kSeeHelp = " (see --help)";
// The longest --timeout taken, a day, as the Python client's: gRPC keeps deadlines as int64
// nanoseconds since the epoch, so a much longer one overflows and every call fails at once (and
// past about 9.2e15 seconds the milliseconds below would not fit an int64 either).
constexpr int kMaxTimeoutSeconds = 86400;

[[noreturn]] void fail(const std::string& message) { throw InputError(message + kSeeHelp); }

std::int64_t parse_positive_integer(const std::string& flag, const std::string& text) {
  std::int64_t value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size() || value < 1) {
    fail(flag + " expects a positive integer, got '" + text + "'");
  }
  return value;
}

std::chrono::milliseconds parse_seconds(const std::string& flag, const std::string& text) {
  double seconds = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), seconds);
  if (error != std::errc() || end != text.data() + text.size() || !std::isfinite(seconds) ||
      seconds <= 0) {
    fail(flag + " expects a positive number of seconds, got '" + text + "'");
  }
  if (seconds > kMaxTimeoutSeconds) {
    fail(flag + " expects at most " + std::to_string(kMaxTimeoutSeconds) +
         " seconds (a day), got '" + text + "'");
  }
  return std::chrono::milliseconds(static_cast<std::int64_t>(std::ceil(seconds * 1000)));
}

// Splits "--flag=value" into ("--flag", "value"); "--flag" alone gives no value.
std::pair<std::string, std::optional<std::string>> split_flag(std::string_view argument) {
  const auto equals = argument.find('=');
  if (equals == std::string_view::npos) return {std::string(argument), std::nullopt};
  return {std::string(argument.substr(0, equals)), std::string(argument.substr(equals + 1))};
}

std::string non_empty(const std::string& flag, const std::string& value) {
  if (value.empty()) fail(flag + " expects a non-empty value (omit it for the default)");
  return value;
}

using Setter = void (*)(Options&, const std::string& flag, const std::string& value);

// Every flag that takes a value, and what it sets: one table, so that an unknown flag is named as
// such wherever it is (even as the last argument, where it would otherwise expect a value).
const std::map<std::string, Setter>& value_flags() {
  static const std::map<std::string, Setter> kFlags = {
      {"--target", [](Options& o, const std::string&, const std::string& v) { o.target = v; }},
      {"--images",
       [](Options& o, const std::string&, const std::string& v) { o.images_path = v; }},
      {"--labels",
       [](Options& o, const std::string&, const std::string& v) { o.labels_path = v; }},
      {"--labels-out",
       [](Options& o, const std::string&, const std::string& v) { o.labels_out_path = v; }},
      {"--batch-size",
       [](Options& o, const std::string& f, const std::string& v) {
         o.batch_size = parse_positive_integer(f, v);
       }},
      {"--timeout",
       [](Options& o, const std::string& f, const std::string& v) {
         o.timeout = parse_seconds(f, v);
       }},
      {"--model", [](Options& o, const std::string& f,
                     const std::string& v) { o.model_name = non_empty(f, v); }},
      {"--model-version", [](Options& o, const std::string& f,
                             const std::string& v) { o.model_version = non_empty(f, v); }},
      {"--tls-ca",
       [](Options& o, const std::string&, const std::string& v) { o.tls_ca_path = v; }},
      {"--tls-cert",
       [](Options& o, const std::string&, const std::string& v) { o.tls_cert_path = v; }},
      {"--tls-key",
       [](Options& o, const std::string&, const std::string& v) { o.tls_key_path = v; }},
      {"--token-file",
       [](Options& o, const std::string&, const std::string& v) { o.token_file_path = v; }},
  };
  return kFlags;
}

bool is_switch(const std::string& flag) {
  return flag == "--json" || flag == "--help" || flag == "-h";
}

}  // namespace

Options parse_options(int argc, const char* const* argv) {
  Options options;
  const std::vector<std::string> arguments(argv + 1, argv + argc);
  for (std::size_t i = 0; i < arguments.size(); ++i) {
    auto [flag, value] = split_flag(arguments[i]);
    if (is_switch(flag)) {
      if (value) fail(flag + " takes no value");
      (flag == "--json" ? options.json : options.help) = true;
      continue;
    }
    if (flag.rfind("--", 0) != 0) fail("unexpected argument '" + flag + "'");
    const auto setter = value_flags().find(flag);
    if (setter == value_flags().end()) fail("unknown flag " + flag);
    if (!value) {
      if (i + 1 == arguments.size()) fail(flag + " expects a value");
      value = arguments[++i];
    }
    setter->second(options, flag, *value);
  }
  if (options.help) return options;
  if (options.target.empty()) fail("--target HOST:PORT is required");
  if (options.images_path.empty()) fail("--images FILE is required");
  if (options.tls_cert_path.has_value() != options.tls_key_path.has_value()) {
    fail("--tls-cert and --tls-key go together: give both or neither");
  }
  return options;
}

std::string usage(const std::string& program) {
  return "usage: " + program +
         " --target TARGET --images FILE [--labels FILE] [--batch-size N]\n"
         "       [--model NAME] [--model-version V] [--tls-ca FILE]\n"
         "       [--tls-cert FILE --tls-key FILE] [--token-file FILE]\n"
         "       [--timeout SECONDS] [--labels-out FILE] [--json]\n"
         "\n"
         "Classifies the images of an IDX file (gzip or raw) with a scratchnet server's\n"
         "scratchnet.v1.Classifier/Predict and prints one predicted label per line.\n"
         "\n"
         "  --target TARGET      the server, e.g. 127.0.0.1:50051; replicas, balanced round\n"
         "                       robin with retries: HOST:PORT,HOST:PORT,... or\n"
         "                       dns:///NAME:PORT (every address of NAME)\n"
         "  --images FILE        IDX image file [N, H, W] of unsigned bytes\n"
         "  --labels FILE        IDX label file [N]: also report the accuracy (on stderr)\n"
         "  --batch-size N       images per Predict call (default: about 1 MB of pixels,\n"
         "                       at most the model's max batch size)\n"
         "  --model NAME         the model to ask (default: the server's default model)\n"
         "  --model-version V    its version (default: the newest the server has)\n"
         "  --tls-ca FILE        use TLS, trusting the CA certificate(s) in FILE (PEM)\n"
         "  --tls-cert FILE      client certificate (PEM) for mutual TLS, with\n"
         "  --tls-key FILE       its private key (PEM); implies TLS\n"
         "  --token-file FILE    send 'authorization: Bearer <token>' with the token in FILE\n"
         "                       (default: the SCRATCHNET_TOKEN environment variable, if set)\n"
         "  --timeout SECONDS    deadline of each call, at most 86400 (default: 30)\n"
         "  --labels-out FILE    write the labels to FILE (atomically) instead of stdout\n"
         "  --json               print one JSON object (labels, accuracy, throughput) instead\n"
         "\n"
         "Exit codes: 0 done, 1 server unreachable or call refused, 2 bad flags or files.\n";
}

}  // namespace scratchnet
