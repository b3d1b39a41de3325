#include "options.h"

#include <charconv>
#include <cmath>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "errors.h"

namespace scratchnet {
namespace {

constexpr const char* kSeeHelp = " (see --help)";

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
  return std::chrono::milliseconds(static_cast<std::int64_t>(std::ceil(seconds * 1000)));
}

// Splits "--flag=value" into ("--flag", "value"); "--flag" alone gives no value.
std::pair<std::string, std::optional<std::string>> split_flag(std::string_view argument) {
  const auto equals = argument.find('=');
  if (equals == std::string_view::npos) return {std::string(argument), std::nullopt};
  return {std::string(argument.substr(0, equals)), std::string(argument.substr(equals + 1))};
}

void set_value(Options& options, const std::string& flag, const std::string& value) {
  if (flag == "--target") {
    options.target = value;
  } else if (flag == "--images") {
    options.images_path = value;
  } else if (flag == "--labels") {
    options.labels_path = value;
  } else if (flag == "--labels-out") {
    options.labels_out_path = value;
  } else if (flag == "--batch-size") {
    options.batch_size = parse_positive_integer(flag, value);
  } else if (flag == "--timeout") {
    options.timeout = parse_seconds(flag, value);
  } else {
    fail("unknown flag " + flag);
  }
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
    if (!value) {
      if (i + 1 == arguments.size()) fail(flag + " expects a value");
      value = arguments[++i];
    }
    set_value(options, flag, *value);
  }
  if (options.help) return options;
  if (options.target.empty()) fail("--target HOST:PORT is required");
  if (options.images_path.empty()) fail("--images FILE is required");
  return options;
}

std::string usage(const std::string& program) {
  return "usage: " + program +
         " --target HOST:PORT --images FILE [--labels FILE] [--batch-size N]\n"
         "       [--timeout SECONDS] [--labels-out FILE] [--json]\n"
         "\n"
         "Classifies the images of an IDX file (gzip or raw) with a scratchnet server's\n"
         "scratchnet.v1.Classifier/Predict and prints one predicted label per line.\n"
         "\n"
         "  --target HOST:PORT   the server, e.g. 127.0.0.1:50051\n"
         "  --images FILE        IDX image file [N, H, W] of unsigned bytes\n"
         "  --labels FILE        IDX label file [N]: also report the accuracy (on stderr)\n"
         "  --batch-size N       images per Predict call (default: about 1 MB of pixels,\n"
         "                       at most the model's max batch size)\n"
         "  --timeout SECONDS    deadline of each call (default: 30)\n"
         "  --labels-out FILE    write the labels to FILE (atomically) instead of stdout\n"
         "  --json               print one JSON object (labels, accuracy, throughput) instead\n"
         "\n"
         "Exit codes: 0 done, 1 server unreachable or call refused, 2 bad flags or files.\n";
}

}  // namespace scratchnet
