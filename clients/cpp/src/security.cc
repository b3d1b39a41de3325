#include "security.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>

#include "errors.h"

namespace scratchnet {
namespace {

std::string read_file(const std::string& flag, const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (file) {
    std::string content{std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>()};
    if (!file.bad()) return content;
  }
  throw InputError(flag + " " + path + ": cannot read it (" + std::strerror(errno) + ")");
}

// gRPC reads the PEM only when it connects, and reports a bad one as a failed handshake.
std::string read_pem(const std::string& flag, const std::string& path, const std::string& what,
                     const std::string& marker) {
  std::string pem = read_file(flag, path);
  if (pem.find("-----BEGIN ") == std::string::npos || pem.find(marker) == std::string::npos) {
    throw InputError(flag + " " + path + ": not a PEM " + what + " (expected a '-----BEGIN " +
                     (what == "certificate" ? "CERTIFICATE" : "... PRIVATE KEY") + "-----' block)");
  }
  return pem;
}

// One token on one line, of what a header value may hold: visible ASCII, no spaces.
std::string parse_token(const std::string& source, const std::string& text) {
  const auto begin = text.find_first_not_of(" \t\r\n");
  if (begin == std::string::npos) {
    throw InputError(source + " holds no token: expected one token on one line");
  }
  const std::string token = text.substr(begin, text.find_last_not_of(" \t\r\n") - begin + 1);
  if (!std::all_of(token.begin(), token.end(), [](char c) { return c > ' ' && c < 127; })) {
    throw InputError(source +
                     ": expected one token on one line, of visible ASCII characters without "
                     "spaces");
  }
  return token;
}

}  // namespace

Security load_security(const Options& options) {
  Security security;
  if (options.tls_ca_path) {
    security.tls = true;
    security.root_certificates =
        read_pem("--tls-ca", *options.tls_ca_path, "certificate", "CERTIFICATE-----");
  }
  if (options.tls_cert_path && options.tls_key_path) {
    security.tls = true;
    security.client_certificate =
        read_pem("--tls-cert", *options.tls_cert_path, "certificate", "CERTIFICATE-----");
    security.client_key =
        read_pem("--tls-key", *options.tls_key_path, "private key", "PRIVATE KEY-----");
  }
  if (options.token_file_path) {
    const std::string& path = *options.token_file_path;
    security.token = parse_token("--token-file " + path, read_file("--token-file", path));
  } else if (const char* value = std::getenv(kTokenVariable)) {
    if (std::string(value).find_first_not_of(" \t\r\n") != std::string::npos) {
      security.token = parse_token(kTokenVariable, value);
    }
  }
  return security;
}

}  // namespace scratchnet
