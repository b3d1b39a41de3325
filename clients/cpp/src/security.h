// Who the client says it is: TLS (a CA to trust, a client certificate for mutual TLS) and a
// bearer token. Files are read and checked before any connection, so that a bad file is named
// as such rather than showing up as a failed handshake. The token never appears in a message.
#pragma once

#include <optional>
#include <string>

#include "options.h"

namespace scratchnet {

// The variable the token comes from when no --token-file is given.
constexpr const char* kTokenVariable = "SCRATCHNET_TOKEN";

struct Security {
  bool tls = false;
  std::string root_certificates;  // PEM; empty: the system's roots
  std::string client_key;         // PEM; empty: no client certificate
  std::string client_certificate;
  std::optional<std::string> token;  // sent as "authorization: Bearer <token>"
};

// TLS material and the token from the flags and $SCRATCHNET_TOKEN; a file that cannot be read or
// is a folder, PEM that does not parse, a key not of the certificate or no single token throws
// InputError naming the flag and the file.
Security load_security(const Options& options);

}  // namespace scratchnet
