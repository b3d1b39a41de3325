#include "classifier_client.h"

#include <absl/status/status.h>
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <functional>
#include <numeric>

#include "errors.h"
#include "idx_file.h"

namespace scratchnet {
namespace {

// The canonical name (INVALID_ARGUMENT, as grpcio and grpcurl print it): gRPC's status codes
// and Abseil's, which gRPC is built on, are the same numbers.
std::string status_name(grpc::StatusCode code) {
  return absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
}

// Server messages may span lines; ours must not.
std::string one_line(std::string text) {
  std::replace(text.begin(), text.end(), '\n', ' ');
  return text;
}

std::string format_seconds(std::chrono::milliseconds duration) {
  const double seconds = static_cast<double>(duration.count()) / 1000.0;
  std::string text = std::to_string(seconds);
  text.erase(text.find_last_not_of('0') + 1);
  if (text.back() == '.') text.pop_back();
  return text;
}

}  // namespace

ClassifierClient::ClassifierClient(std::string target, std::chrono::milliseconds timeout)
    : target_(std::move(target)),
      timeout_(timeout),
      stub_(v1::Classifier::NewStub(
          grpc::CreateChannel(target_, grpc::InsecureChannelCredentials()))) {}

void ClassifierClient::set_deadline(grpc::ClientContext& context) const {
  context.set_deadline(std::chrono::system_clock::now() + timeout_);
}

void ClassifierClient::fail(const std::string& method, const grpc::Status& status) const {
  const std::string where = method + " on " + target_;
  switch (status.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
      throw ServerError("cannot reach the server at " + target_ + " (" + where +
                        ": UNAVAILABLE: " + one_line(status.error_message()) + ")");
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      throw ServerError(where + ": no answer within the " + format_seconds(timeout_) +
                        " s deadline (raise it with --timeout)");
    default:
      throw ServerError(where + " failed: " + status_name(status.error_code()) + ": " +
                        one_line(status.error_message()));
  }
}

v1::GetModelInfoResponse ClassifierClient::model_info() const {
  grpc::ClientContext context;
  set_deadline(context);
  v1::GetModelInfoResponse response;
  const grpc::Status status = stub_->GetModelInfo(&context, v1::GetModelInfoRequest(), &response);
  if (!status.ok()) fail("GetModelInfo", status);
  return response;
}

std::vector<std::int64_t> ClassifierClient::predict(const std::uint8_t* pixels,
                                                    const std::vector<std::int64_t>& shape) const {
  const auto size = static_cast<std::size_t>(
      std::accumulate(shape.begin(), shape.end(), std::int64_t{1}, std::multiplies<>()));
  v1::PredictRequest request;
  v1::Tensor& images = *request.mutable_images();
  images.set_dtype(v1::DATA_TYPE_UINT8);
  for (const std::int64_t dim : shape) images.add_shape(dim);
  images.set_data(pixels, size);

  grpc::ClientContext context;
  set_deadline(context);
  v1::PredictResponse response;
  const grpc::Status status = stub_->Predict(&context, request, &response);
  if (!status.ok()) fail("Predict", status);

  // A server that miscounts would silently shift every later label against its image.
  if (response.labels_size() != shape.front()) {
    throw ServerError("Predict on " + target_ + " answered " +
                      std::to_string(response.labels_size()) + " labels for a batch of shape " +
                      format_shape(shape));
  }
  return {response.labels().begin(), response.labels().end()};
}

}  // namespace scratchnet
