// scratchnet_predict: classifies the images of an IDX file with a scratchnet server over gRPC.
//
// Flow: read and check the files first (no server needed to report a bad path), ask the model
// for its input shape and max batch, send the images in batches as raw uint8 tensors, print the
// labels and, given the true labels, the accuracy.
#include <grpc/support/log.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstdint>
#include <cstring>
#include <deque>
#include <future>
#include <iostream>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "classifier_client.h"
#include "errors.h"
#include "idx_file.h"
#include "options.h"
#include "report.h"
#include "security.h"
#include "targets.h"

namespace scratchnet {
namespace {

constexpr int kExitServerError = 1;
constexpr int kExitInputError = 2;
// Without --batch-size, a batch holds about this many bytes of pixels (as the Node.js client's):
// far below gRPC's default 4 MB message limit, large enough that per-call overhead is small.
constexpr std::int64_t kDefaultBatchBytes = std::int64_t{1} << 20;
// Predict calls under way at once per server: it classifies one batch while the next is on the
// wire (the Python client keeps the same number of batches in flight on its stream). Replicas
// get as many each, and at least two replicas' worth when a resolver decides how many there are.
constexpr int kCallsPerServer = 2;

std::size_t calls_in_flight(const Targets& targets) {
  if (!targets.balanced()) return kCallsPerServer;
  return static_cast<std::size_t>(kCallsPerServer * std::max(2, targets.replicas));
}

IdxArray read_images(const std::string& path) {
  IdxArray images = read_idx(path, kIdxImagesMagic);
  if (images.shape.front() == 0) throw InputError(path + " holds no images: expected at least 1");
  return images;
}

std::vector<std::uint8_t> read_true_labels(const std::string& path, std::int64_t image_count,
                                           const std::string& images_path) {
  IdxArray labels = read_idx(path, kIdxLabelsMagic);
  if (labels.shape.front() != image_count) {
    throw InputError(path + " holds " + std::to_string(labels.shape.front()) +
                     " labels, expected " + std::to_string(image_count) + " (one per image of " +
                     images_path + ")");
  }
  return std::move(labels.values);
}

// Checked here as well as by the server so that the message can name the file.
void check_fits_model(const v1::GetModelInfoResponse& info, const IdxArray& images,
                      const std::string& path) {
  const std::vector<std::int64_t> expected(info.input_shape().begin(), info.input_shape().end());
  bool fits = expected.size() == images.shape.size();
  for (std::size_t d = 1; fits && d < expected.size(); ++d) {
    fits = expected[d] == -1 || expected[d] == images.shape[d];
  }
  if (!fits) {
    throw InputError("input 'images' of model '" + info.model_name() + "': expected shape " +
                     format_shape(expected) + ", got " + format_shape(images.shape) + " from " +
                     path);
  }
  const auto& dtypes = info.input_dtypes();
  if (std::find(dtypes.begin(), dtypes.end(), v1::DATA_TYPE_UINT8) == dtypes.end()) {
    throw InputError("model '" + info.model_name() + "' does not accept uint8 images");
  }
}

// Labels the model cannot give would score as mistakes: a set meant for another model.
void check_labels_fit(const v1::GetModelInfoResponse& info,
                      const std::vector<std::uint8_t>& labels, const std::string& path) {
  if (labels.empty()) return;
  const int highest = *std::max_element(labels.begin(), labels.end());
  if (highest >= info.num_classes()) {
    throw InputError(path + ": the labels go up to " + std::to_string(highest) + ", but model '" +
                     info.model_name() + "' has only " + std::to_string(info.num_classes()) +
                     " classes");
  }
}

std::int64_t choose_batch_size(const std::optional<std::int64_t>& requested,
                               const v1::GetModelInfoResponse& info, const IdxArray& images) {
  const std::int64_t limit = info.max_batch_size();
  if (!requested) {
    const auto image_bytes = static_cast<std::int64_t>(images.values.size()) / images.shape[0];
    const std::int64_t by_bytes = std::max<std::int64_t>(1, kDefaultBatchBytes / image_bytes);
    return limit > 0 ? std::min(limit, by_bytes) : by_bytes;
  }
  if (limit > 0 && *requested > limit) {
    throw InputError("--batch-size " + std::to_string(*requested) + " is more than model '" +
                     info.model_name() + "' accepts per call: expected at most " +
                     std::to_string(limit));
  }
  return *requested;
}

std::vector<std::int64_t> predict_all(const ClassifierClient& client, const IdxArray& images,
                                      std::int64_t batch_size) {
  const std::int64_t count = images.shape.front();
  const auto image_bytes = static_cast<std::size_t>(images.values.size() / count);
  std::vector<std::int64_t> labels;
  labels.reserve(static_cast<std::size_t>(count));
  const std::size_t window = calls_in_flight(client.targets());
  std::deque<std::future<std::vector<std::int64_t>>> in_flight;
  const auto collect_oldest = [&] {
    const auto batch = in_flight.front().get();  // rethrows the call's error, if any
    labels.insert(labels.end(), batch.begin(), batch.end());
    in_flight.pop_front();
  };
  for (std::int64_t start = 0; start < count; start += batch_size) {
    std::vector<std::int64_t> shape = images.shape;
    shape.front() = std::min(batch_size, count - start);
    const std::uint8_t* pixels = &images.values[static_cast<std::size_t>(start) * image_bytes];
    in_flight.push_back(std::async(std::launch::async, [&client, pixels, shape] {
      return client.predict(pixels, shape);
    }));
    if (in_flight.size() == window) collect_oldest();
  }
  while (!in_flight.empty()) collect_oldest();
  return labels;
}

void print_results(const Options& options, const Report& report) {
  if (options.labels_out_path) {
    write_file_atomically(*options.labels_out_path, labels_text(report.labels));
  }
  if (options.json) {
    std::cout << json_summary(report, !options.labels_out_path);
  } else if (!options.labels_out_path) {
    std::cout << labels_text(report.labels);
  }
  // Checked before the summary, which would otherwise report a run whose labels were lost.
  if (!std::cout.flush()) {
    throw OutputError(std::string("cannot write to standard output (") + std::strerror(errno) +
                      ")");
  }
  // On stderr, so that stdout stays one label per line for pipes and redirections.
  if (!options.json) std::cerr << text_summary(report) << std::endl;
}

int run(const Options& options) {
  const IdxArray images = read_images(options.images_path);
  Report report;
  if (options.labels_path) {
    report.expected = read_true_labels(*options.labels_path, images.shape.front(),
                                       options.images_path);
  }
  // A --labels-out naming a folder is refused now, not once every image has been classified.
  if (options.labels_out_path) check_file_path(*options.labels_out_path);
  const Targets targets = parse_targets(options.target);
  ClassifierClient client(targets, load_security(options), options.timeout, options.model_name,
                          options.model_version);
  v1::GetModelInfoResponse info = client.model_info();
  // Replicas are asked for the model and version the first one described, so that a replica
  // serving another version fails the call (NOT_FOUND) instead of answering.
  if (targets.balanced()) client.pin_model(info.model_name(), info.model_version());
  if (targets.addresses.size() > 1) info = client.agreed(std::move(info));
  check_fits_model(info, images, options.images_path);
  if (report.expected) check_labels_fit(info, *report.expected, *options.labels_path);
  const std::int64_t batch_size = choose_batch_size(options.batch_size, info, images);

  const auto started = std::chrono::steady_clock::now();
  report.labels = predict_all(client, images, batch_size);
  report.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  report.model_name = info.model_name();
  report.model_version = info.model_version();
  print_results(options, report);
  return 0;
}

// gRPC's C core logs a failed TLS handshake on stderr, next to our one-line error that already
// carries its words. Quiet unless GRPC_VERBOSITY asks for its logs, as the server does.
void quiet_grpc_logs() {
  if (std::getenv("GRPC_VERBOSITY") == nullptr) gpr_set_log_function([](gpr_log_func_args*) {});
}

std::string program_name(const char* argv0) {
  const std::string path = argv0 ? argv0 : "scratchnet_predict";
  return path.substr(path.find_last_of('/') + 1);
}

}  // namespace
}  // namespace scratchnet

int main(int argc, char** argv) {
  using namespace scratchnet;
  const std::string program = program_name(argc > 0 ? argv[0] : nullptr);
  quiet_grpc_logs();
  try {
    const Options options = parse_options(argc, argv);
    if (options.help) {
      std::cout << usage(program);
      return 0;
    }
    return run(options);
  } catch (const InputError& error) {
    std::cerr << program << ": error: " << error.what() << std::endl;
    return kExitInputError;
  } catch (const std::exception& error) {
    std::cerr << program << ": error: " << error.what() << std::endl;
    return kExitServerError;
  }
}
