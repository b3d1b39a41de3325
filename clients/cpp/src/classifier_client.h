// A thin client for scratchnet.v1.Classifier: every call has a deadline and carries the bearer
// token, every failure becomes a one-line ServerError naming the call, the server, the status
// and, where the cause is likely in how we connect, what to change.
#pragma once

#include <grpcpp/security/credentials.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "scratchnet/v1/classifier.grpc.pb.h"
#include "security.h"
#include "targets.h"

namespace scratchnet {

class ClassifierClient {
 public:
  // Connects lazily: an unreachable target shows up as an error of the first call. Calls ask
  // for `model_name` at `model_version` (empty: the server's default, its newest version).
  ClassifierClient(Targets targets, const Security& security, std::chrono::milliseconds timeout,
                   std::string model_name, std::string model_version);

  // The model's name, version, input shape, dtypes, classes and max batch size.
  v1::GetModelInfoResponse model_info() const;

  // Asks every later Predict for this model and version (what replicas must all answer with).
  void pin_model(std::string name, std::string version);

  // `info`, checked against each listed replica on its own for the pinned model: round robin
  // would otherwise mix the answers of different models served under one name and version
  // (every export is version 1), and size batches by one replica's limit only. Throws
  // ServerError when the replicas that answer serve different models; else returns `info` with
  // the tightest max batch size among them. Replicas down for now are skipped.
  v1::GetModelInfoResponse agreed(v1::GetModelInfoResponse info) const;

  // The predicted label of each image of a [N, H, W] uint8 batch, in order: one Predict call.
  std::vector<std::int64_t> predict(const std::uint8_t* pixels,
                                    const std::vector<std::int64_t>& shape) const;

  const Targets& targets() const { return targets_; }

 private:
  void prepare(grpc::ClientContext& context) const;
  grpc::Status get_model_info(v1::Classifier::Stub& stub,
                              v1::GetModelInfoResponse& response) const;
  // What to check when a call is refused (UNAVAILABLE, UNAUTHENTICATED) for how we connect.
  std::string hint(grpc::StatusCode code) const;
  [[noreturn]] void fail(const std::string& method, const grpc::Status& status,
                         const std::string& target) const;

  Targets targets_;
  std::chrono::milliseconds timeout_;
  std::string model_name_;
  std::string model_version_;
  bool tls_;
  bool client_certificate_;
  std::optional<std::string> token_;
  std::shared_ptr<grpc::ChannelCredentials> credentials_;
  std::unique_ptr<v1::Classifier::Stub> stub_;
};

}  // namespace scratchnet
