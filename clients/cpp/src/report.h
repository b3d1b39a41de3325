// What a run prints: the labels (text or JSON), the accuracy and the throughput.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace scratchnet {

struct Report {
  std::string model_name;
  std::string model_version;
  std::vector<std::int64_t> labels;                   // predicted, one per image
  std::optional<std::vector<std::uint8_t>> expected;  // the --labels file's, if given
  double seconds = 0;                                 // wall time of all Predict calls
};

struct Accuracy {
  std::int64_t correct = 0;
  std::int64_t total = 0;
  double fraction() const { return total ? static_cast<double>(correct) / total : 0.0; }
};

// How many predicted labels equal the expected ones; nothing when no labels were given.
std::optional<Accuracy> accuracy(const Report& report);

// One label per line.
std::string labels_text(const std::vector<std::int64_t>& labels);

// Everything about the run as one JSON object (labels only if `with_labels`), newline-ended.
std::string json_summary(const Report& report, bool with_labels);

// One human-readable line: accuracy (if known), images, seconds, images/s, model.
std::string text_summary(const Report& report);

// Throws InputError if `path` cannot name a file: empty, ending in '/', an existing folder, or
// something else than a regular file (a FIFO, a device, a socket).
void check_file_path(const std::string& path);

// Writes `content` to a temporary file next to `path`, then renames it over `path`: readers see
// the old file or the whole new one, never a partial write. A symbolic link is written through
// (the file it leads to is replaced, the link kept). A path check_file_path refuses throws
// InputError; a failed write, OutputError.
void write_file_atomically(const std::string& path, const std::string& content);

}  // namespace scratchnet
