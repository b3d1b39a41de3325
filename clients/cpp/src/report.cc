#include "report.h"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <sstream>
#include <stdexcept>
#include <utility>
#include <vector>

#include "errors.h"

namespace scratchnet {
namespace {

double images_per_second(const Report& report) {
  return report.seconds > 0 ? static_cast<double>(report.labels.size()) / report.seconds : 0.0;
}

google::protobuf::Value json_number(double value) {
  google::protobuf::Value json;
  json.set_number_value(value);
  return json;
}

google::protobuf::Value json_string(const std::string& value) {
  google::protobuf::Value json;
  json.set_string_value(value);
  return json;
}

using JsonFields = std::vector<std::pair<std::string, google::protobuf::Value>>;

// protobuf's JSON printer (already linked in) formats each value and escapes strings; the object
// is joined here because a Struct's map would print its keys in no particular order.
std::string json_object(const JsonFields& fields) {
  std::string json = "{";
  for (const auto& [key, value] : fields) {
    std::string formatted;
    const auto status = google::protobuf::util::MessageToJsonString(value, &formatted);
    if (!status.ok()) throw std::runtime_error("cannot format " + key + " as JSON");
    json += (json.size() > 1 ? ", \"" : "\"") + key + "\": " + formatted;
  }
  return json + "}";
}

// Writes everything or returns false with errno set.
bool write_all(int fd, const std::string& content) {
  const char* data = content.data();
  std::size_t left = content.size();
  while (left > 0) {
    const ssize_t written = ::write(fd, data, left);
    if (written < 0 && errno == EINTR) continue;
    if (written < 0) return false;
    data += written;
    left -= static_cast<std::size_t>(written);
  }
  return true;
}

}  // namespace

std::optional<Accuracy> accuracy(const Report& report) {
  if (!report.expected) return std::nullopt;
  Accuracy result;
  result.total = static_cast<std::int64_t>(report.labels.size());
  for (std::size_t i = 0; i < report.labels.size(); ++i) {
    result.correct += report.labels[i] == (*report.expected)[i];
  }
  return result;
}

std::string labels_text(const std::vector<std::int64_t>& labels) {
  std::string text;
  text.reserve(labels.size() * 2);
  for (const std::int64_t label : labels) text += std::to_string(label) + '\n';
  return text;
}

std::string json_summary(const Report& report, bool with_labels) {
  JsonFields fields = {
      {"model_name", json_string(report.model_name)},
      {"model_version", json_string(report.model_version)},
      {"images", json_number(static_cast<double>(report.labels.size()))},
      {"seconds", json_number(report.seconds)},
      {"images_per_second", json_number(images_per_second(report))},
  };
  if (const auto result = accuracy(report)) {
    fields.emplace_back("accuracy", json_number(result->fraction()));
    fields.emplace_back("correct", json_number(static_cast<double>(result->correct)));
  }
  if (with_labels) {
    google::protobuf::Value labels;
    auto& list = *labels.mutable_list_value();
    for (const std::int64_t label : report.labels) {
      list.add_values()->set_number_value(static_cast<double>(label));
    }
    fields.emplace_back("labels", std::move(labels));
  }
  return json_object(fields) + '\n';
}

std::string text_summary(const Report& report) {
  std::ostringstream line;
  line.setf(std::ios::fixed);
  if (const auto result = accuracy(report)) {
    line.precision(4);
    line << "accuracy " << result->fraction() << " (" << result->correct << "/" << result->total
         << " correct), ";
  }
  line.precision(3);
  line << report.labels.size() << " images in " << report.seconds << " s (";
  line.precision(0);
  line << images_per_second(report) << " images/s), model " << report.model_name << " version "
       << report.model_version;
  return line.str();
}

void check_file_path(const std::string& path) {
  // Else the final rename fails with a puzzling "Not a directory" or "Is a directory", and only
  // once every image has been classified (and "dir/" would have created the folder "dir").
  if (path.empty()) throw InputError("cannot write '': expected a file path");
  if (path.back() == '/') {
    throw InputError("cannot write " + path +
                     ": it names a folder (it ends in '/'), expected a file path");
  }
  std::error_code ignored;
  const auto status = std::filesystem::status(path, ignored);  // through symbolic links
  if (std::filesystem::is_directory(status)) {
    throw InputError("cannot write " + path + ": it is a folder, expected a file path");
  }
  // The rename would replace a FIFO or a device by a regular file.
  if (std::filesystem::exists(status) && !std::filesystem::is_regular_file(status)) {
    throw InputError("cannot write " + path +
                     ": it is not a regular file (a device, FIFO or socket), expected a file path");
  }
}

namespace {

// Symbolic links followed before giving up, as the kernel's ELOOP limit.
constexpr int kMaxLinks = 40;

// The file that writing `path` replaces: the end of its chain of symbolic links, so that a link
// is written through rather than replaced by a file, as the Python CLIs do (scratchnet.files).
std::filesystem::path file_target(const std::string& path) {
  std::filesystem::path target(path);
  std::error_code error;
  for (int links = 0; links < kMaxLinks && std::filesystem::is_symlink(target, error); ++links) {
    const std::filesystem::path next = std::filesystem::read_symlink(target, error);
    if (error) break;
    target = next.is_absolute() ? next : target.parent_path() / next;
  }
  return target;
}

}  // namespace

void write_file_atomically(const std::string& path, const std::string& content) {
  check_file_path(path);
  const std::filesystem::path target = file_target(path);
  const std::filesystem::path directory =
      target.has_parent_path() ? target.parent_path() : std::filesystem::path(".");
  // A directory that cannot be created shows up as mkstemps' error just below.
  std::error_code ignored;
  std::filesystem::create_directories(directory, ignored);
  // In the same directory, so that the final rename is atomic.
  std::string temporary = (directory / ("." + target.filename().string() + ".XXXXXX.tmp")).string();
  const int fd = ::mkstemps(temporary.data(), 4);
  if (fd < 0) throw OutputError("cannot write " + path + ": " + std::strerror(errno));
  // fsync before the rename: otherwise a crash can leave `path` naming an empty file.
  bool ok = write_all(fd, content) && ::fsync(fd) == 0 && ::fchmod(fd, 0644) == 0;
  int error = ok ? 0 : errno;
  if (::close(fd) != 0 && ok) {
    ok = false;
    error = errno;
  }
  if (ok && std::rename(temporary.c_str(), target.c_str()) != 0) {
    ok = false;
    error = errno;
  }
  if (!ok) {
    std::remove(temporary.c_str());
    throw OutputError("cannot write " + path + ": " + std::strerror(error));
  }
}

}  // namespace scratchnet
