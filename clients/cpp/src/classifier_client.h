// A thin client for scratchnet.v1.Classifier: every call has a deadline, every failure becomes a
// one-line ServerError naming the call, the server and the status.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "scratchnet/v1/classifier.grpc.pb.h"

namespace scratchnet {

class ClassifierClient {
 public:
  // Connects lazily: an unreachable `target` shows up as an error of the first call.
  ClassifierClient(std::string target, std::chrono::milliseconds timeout);

  // The loaded model's input shape, dtypes, classes and max batch size.
  v1::GetModelInfoResponse model_info() const;

  // The predicted label of each image of a [N, H, W] uint8 batch, in order: one Predict call.
  std::vector<std::int64_t> predict(const std::uint8_t* pixels,
                                    const std::vector<std::int64_t>& shape) const;

  const std::string& target() const { return target_; }

 private:
  void set_deadline(grpc::ClientContext& context) const;
  [[noreturn]] void fail(const std::string& method, const grpc::Status& status) const;

  std::string target_;
  std::chrono::milliseconds timeout_;
  std::unique_ptr<v1::Classifier::Stub> stub_;
};

}  // namespace scratchnet
