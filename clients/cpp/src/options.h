// The command line of scratchnet_predict.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

namespace scratchnet {

struct Options {
  std::string target;                          // HOST:PORT of the server
  std::string images_path;                     // IDX image file, gzip or raw
  std::optional<std::string> labels_path;      // IDX label file: enables the accuracy
  std::optional<std::string> labels_out_path;  // write labels here instead of stdout
  std::optional<std::int64_t> batch_size;      // default: the model's max batch size
  std::chrono::milliseconds timeout{30'000};   // deadline of each call
  bool json = false;                           // one JSON object on stdout
  bool help = false;                           // --help: print usage, do nothing else
};

// Parses argv; a bad or missing flag throws InputError naming it.
Options parse_options(int argc, const char* const* argv);

// The --help text.
std::string usage(const std::string& program);

}  // namespace scratchnet
