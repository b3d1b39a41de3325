#include "classifier_client.h"

#include <absl/status/status.h>
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <functional>
#include <numeric>
#include <tuple>
#include <utility>

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

std::shared_ptr<grpc::Channel> make_channel(const Targets& targets,
                                           std::shared_ptr<grpc::ChannelCredentials> credentials,
                                           bool tls) {
  grpc::ChannelArguments arguments;
  if (targets.balanced()) {
    arguments.SetServiceConfigJSON(kReplicaServiceConfig);
    arguments.SetInt(GRPC_ARG_ENABLE_RETRIES, 1);
    arguments.SetInt(GRPC_ARG_PER_RPC_RETRY_BUFFER_SIZE, kRetryBufferBytes);
  }
  if (targets.tls_name && tls) arguments.SetSslTargetNameOverride(*targets.tls_name);
  return grpc::CreateCustomChannel(targets.channel_target, std::move(credentials), arguments);
}

// What tells two served models apart: the artifact they were exported from when they say (its
// SHA-256), their image size (H, W) and class labels.
using Identity = std::tuple<std::string, std::int64_t, std::int64_t, std::vector<std::string>>;

Identity identity(const v1::GetModelInfoResponse& info) {
  const auto& metadata = info.metadata();
  const auto sha = metadata.find("artifact_sha256");
  const auto& shape = info.input_shape();  // [-1, H, W]
  const int rank = shape.size();
  return {sha == metadata.end() ? "" : sha->second, rank >= 2 ? shape[rank - 2] : 0,
          rank >= 1 ? shape[rank - 1] : 0,
          {info.class_labels().begin(), info.class_labels().end()}};
}

std::string shown(const Identity& identity) {
  const auto& [sha, height, width, labels] = identity;
  return (sha.empty() ? "" : "artifact " + sha.substr(0, 12) + ", ") + std::to_string(height) +
         "x" + std::to_string(width) + " images, " + std::to_string(labels.size()) + " classes";
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
      credentials_(credentials(security)),
      stub_(v1::Classifier::NewStub(make_channel(targets_, credentials_, tls_))) {}

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

void ClassifierClient::fail(const std::string& method, const grpc::Status& status,
                            const std::string& target) const {
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

grpc::Status ClassifierClient::get_model_info(v1::Classifier::Stub& stub,
                                              v1::GetModelInfoResponse& response) const {
  grpc::ClientContext context;
  prepare(context);
  v1::GetModelInfoRequest request;
  request.set_model_name(model_name_);
  request.set_model_version(model_version_);
  return stub.GetModelInfo(&context, request, &response);
}

v1::GetModelInfoResponse ClassifierClient::model_info() const {
  v1::GetModelInfoResponse response;
  const grpc::Status status = get_model_info(*stub_, response);
  if (!status.ok()) fail("GetModelInfo", status, targets_.text);
  return response;
}

v1::GetModelInfoResponse ClassifierClient::agreed(v1::GetModelInfoResponse info) const {
  std::vector<std::pair<std::string, Identity>> identities;  // of the replicas that answered
  std::int64_t tightest = 0;
  for (const std::string& address : targets_.addresses) {
    // A channel of its own: on the shared one, round robin picks the replica.
    const auto channel = make_channel(parse_targets(address), credentials_, tls_);
    const auto stub = v1::Classifier::NewStub(channel);
    v1::GetModelInfoResponse found;
    const grpc::Status status = get_model_info(*stub, found);
    // Down for now: the calls go to the others, and gRPC retries it later.
    if (status.error_code() == grpc::StatusCode::UNAVAILABLE) continue;
    if (!status.ok()) fail("GetModelInfo", status, address);
    identities.emplace_back(address, identity(found));
    const std::int64_t limit = found.max_batch_size();
    if (limit > 0 && (tightest == 0 || limit < tightest)) tightest = limit;
  }
  const bool same = std::all_of(identities.begin(), identities.end(), [&](const auto& entry) {
    return entry.second == identities.front().second;
  });
  if (!same) {
    std::string each;
    for (const auto& [address, key] : identities) {
      each += (each.empty() ? "" : "; ") + address + ": " + shown(key);
    }
    throw ServerError("the replicas of " + targets_.text + " serve different models as '" +
                      info.model_name() + "' version " + info.model_version() + " (" + each +
                      "): expected the same model on every replica");
  }
  if (tightest > 0) info.set_max_batch_size(tightest);
  return info;
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
  if (!status.ok()) fail("Predict", status, targets_.text);

  // A server that miscounts would silently shift every later label against its image.
  if (response.labels_size() != shape.front()) {
    throw ServerError("Predict on " + targets_.text + " answered " +
                      std::to_string(response.labels_size()) + " labels for a batch of shape " +
                      format_shape(shape));
  }
  return {response.labels().begin(), response.labels().end()};
}

}  // namespace scratchnet
