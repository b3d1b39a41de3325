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

std::shared_ptr<grpc::ChannelCredentials> credentials(const Security& security) {
  if (!security.tls) return grpc::InsecureChannelCredentials();
  grpc::SslCredentialsOptions tls;
  tls.pem_root_certs = security.root_certificates;
  tls.pem_private_key = security.client_key;
  tls.pem_cert_chain = security.client_certificate;
  return grpc::SslCredentials(tls);
}

std::shared_ptr<grpc::Channel> make_channel(const Targets& targets, const Security& security) {
  grpc::ChannelArguments arguments;
  if (targets.balanced()) {
    arguments.SetServiceConfigJSON(kReplicaServiceConfig);
    arguments.SetInt(GRPC_ARG_ENABLE_RETRIES, 1);
    arguments.SetInt(GRPC_ARG_PER_RPC_RETRY_BUFFER_SIZE, kRetryBufferBytes);
  }
  if (targets.tls_name && security.tls) arguments.SetSslTargetNameOverride(*targets.tls_name);
  return grpc::CreateCustomChannel(targets.channel_target, credentials(security), arguments);
}

}  // namespace

ClassifierClient::ClassifierClient(Targets targets, const Security& security,
                                   std::chrono::milliseconds timeout, std::string model_name,
                                   std::string model_version)
    : targets_(std::move(targets)),
      timeout_(timeout),
      model_name_(std::move(model_name)),
      model_version_(std::move(model_version)),
      tls_(security.tls),
      client_certificate_(!security.client_certificate.empty()),
      token_(security.token),
      stub_(v1::Classifier::NewStub(make_channel(targets_, security))) {}

void ClassifierClient::pin_model(std::string name, std::string version) {
  model_name_ = std::move(name);
  model_version_ = std::move(version);
}

void ClassifierClient::prepare(grpc::ClientContext& context) const {
  context.set_deadline(std::chrono::system_clock::now() + timeout_);
  if (token_) context.AddMetadata("authorization", "Bearer " + *token_);
}

std::string ClassifierClient::hint(grpc::StatusCode code) const {
  if (code == grpc::StatusCode::UNAUTHENTICATED) {
    return token_ ? std::string("the bearer token sent (--token-file or ") + kTokenVariable +
                        ") was refused"
                  : std::string("no bearer token was sent: pass --token-file FILE or set ") +
                        kTokenVariable;
  }
  if (!tls_) {
    return "is the server up? If it requires TLS, pass --tls-ca FILE (and --tls-cert FILE "
           "--tls-key FILE if it requires a client certificate)";
  }
  return std::string(
             "over TLS: is the server up, does it serve TLS, is its certificate signed by the CA "
             "trusted (--tls-ca), and does it accept ") +
         (client_certificate_ ? "this client certificate (--tls-cert)?"
                              : "clients without a certificate (else pass --tls-cert FILE "
                                "--tls-key FILE)?");
}

void ClassifierClient::fail(const std::string& method, const grpc::Status& status) const {
  const std::string& target = targets_.text;
  const std::string where = method + " on " + target;
  const std::string message = one_line(status.error_message());
  switch (status.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
      throw ServerError("cannot reach the server at " + target + " (" + where +
                        ": UNAVAILABLE: " + message + "); " + hint(status.error_code()));
    case grpc::StatusCode::UNAUTHENTICATED:
      throw ServerError(where + " failed: UNAUTHENTICATED: " + message + " (" +
                        hint(status.error_code()) + ")");
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      throw ServerError(where + ": no answer within the " + format_seconds(timeout_) +
                        " s deadline (raise it with --timeout)");
    default:
      throw ServerError(where + " failed: " + status_name(status.error_code()) + ": " + message);
  }
}

v1::GetModelInfoResponse ClassifierClient::model_info() const {
  grpc::ClientContext context;
  prepare(context);
  v1::GetModelInfoRequest request;
  request.set_model_name(model_name_);
  request.set_model_version(model_version_);
  v1::GetModelInfoResponse response;
  const grpc::Status status = stub_->GetModelInfo(&context, request, &response);
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
  request.set_model_name(model_name_);
  request.set_model_version(model_version_);

  grpc::ClientContext context;
  prepare(context);
  v1::PredictResponse response;
  const grpc::Status status = stub_->Predict(&context, request, &response);
  if (!status.ok()) fail("Predict", status);

  // A server that miscounts would silently shift every later label against its image.
  if (response.labels_size() != shape.front()) {
    throw ServerError("Predict on " + targets_.text + " answered " +
                      std::to_string(response.labels_size()) + " labels for a batch of shape " +
                      format_shape(shape));
  }
  return {response.labels().begin(), response.labels().end()};
}

}  // namespace scratchnet
