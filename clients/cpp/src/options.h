// The command line of scratchnet_predict.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

namespace scratchnet {

struct Options {
  std::string target;                          // HOST:PORT, HOST:PORT,... or dns:///NAME:PORT
  std::string images_path;                     // IDX image file, gzip or raw
  std::string model_name;                      // empty: the server's default model
  std::string model_version;                   // empty: the newest version the server has
  std::optional<std::string> tls_ca_path;      // PEM CA(s) to trust; implies TLS
  std::optional<std::string> tls_cert_path;    // PEM client certificate (mutual TLS)
  std::optional<std::string> tls_key_path;     // its PEM private key
  std::optional<std::string> token_file_path;  // bearer token (else $SCRATCHNET_TOKEN)
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
