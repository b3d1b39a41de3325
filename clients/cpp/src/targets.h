// Where the calls go: one server, or several replicas behind gRPC's own client-side load
// balancing. The same forms and semantics as the Python and Node.js clients:
//
//   HOST:PORT                 one server, one connection (gRPC's default pick_first)
//   HOST:PORT,HOST:PORT,...   replicas: each HOST resolved here, every address handed to gRPC as
//                             one ipv4: (or ipv6:) target
//   dns:///NAME:PORT          every address NAME resolves to (re-resolved by gRPC); also
//   ipv4:A:P,A:P / ipv6:...   gRPC's own address lists
//
// Replicas get a service config: round_robin, and a retry policy under which an idempotent call
// (Predict, GetModelInfo) failing with UNAVAILABLE is tried again, on the next replica, within
// the call's deadline.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace scratchnet {

struct Targets {
  std::string text;            // as the user wrote it, for messages
  std::string channel_target;  // what the channel connects to
  int replicas = 1;            // addresses listed; 0 when a resolver decides (dns:///...)
  std::optional<std::string> tls_name;  // the name TLS checks, when it is not the first address
  // Each listed replica's own HOST:PORT as written, to reach one of them alone; none for a
  // resolver's (dns:///...).
  std::vector<std::string> addresses;

  // Calls may go to several servers: round robin, retries, several calls in flight per replica.
  bool balanced() const { return replicas != 1; }
};

// The service config of a channel to replicas (gRPC's JSON form).
extern const char* const kReplicaServiceConfig;

// gRPC retries a call only while it holds the request (256 KiB by default, a quarter of one
// default batch): enough for the server's default message limit (64 MiB).
constexpr int kRetryBufferBytes = 64 * 1024 * 1024;

// Parses and, for a list, resolves --target; a malformed target or an unknown name throws
// InputError saying what was expected.
Targets parse_targets(const std::string& text);

}  // namespace scratchnet
