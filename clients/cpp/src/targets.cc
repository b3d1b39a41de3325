#include "targets.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <memory>
#include <utility>
#include <vector>

#include "errors.h"

namespace scratchnet {

const char* const kReplicaServiceConfig = R"({
  "loadBalancingConfig": [{"round_robin": {}}],
  "methodConfig": [{
    "name": [
      {"service": "scratchnet.v1.Classifier", "method": "Predict"},
      {"service": "scratchnet.v1.Classifier", "method": "GetModelInfo"}
    ],
    "retryPolicy": {
      "maxAttempts": 5,
      "initialBackoff": "0.05s",
      "maxBackoff": "1s",
      "backoffMultiplier": 2,
      "retryableStatusCodes": ["UNAVAILABLE"]
    }
  }]
})";

namespace {

constexpr std::array<const char*, 5> kSchemes = {"dns:", "ipv4:", "ipv6:", "unix:",
                                                 "unix-abstract:"};
constexpr const char* kExpected =
    "expected HOST:PORT, several separated by commas (HOST:PORT,HOST:PORT), or a gRPC name such "
    "as dns:///HOST:PORT";

struct HostPort {
  std::string host;
  std::string port;
};

[[noreturn]] void fail(const std::string& text, const std::string& what) {
  throw InputError("--target '" + text + "': " + what);
}

bool starts_with(const std::string& text, const std::string& prefix) {
  return text.compare(0, prefix.size(), prefix) == 0;
}

std::string trimmed(const std::string& text) {
  const auto begin = text.find_first_not_of(" \t");
  if (begin == std::string::npos) return "";
  return text.substr(begin, text.find_last_not_of(" \t") - begin + 1);
}

HostPort host_port(const std::string& part, const std::string& text) {
  const auto colon = part.rfind(':');
  if (colon == std::string::npos) fail(text, std::string(kExpected) + ", e.g. 127.0.0.1:50051");
  std::string host = part.substr(0, colon);
  const std::string port = part.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);  // [::1]:50051
  }
  const auto is_digit = [](char c) { return c >= '0' && c <= '9'; };
  const bool digits =
      !port.empty() && port.size() <= 5 && std::all_of(port.begin(), port.end(), is_digit);
  if (host.empty() || !digits || std::stoi(port) < 1 || std::stoi(port) > 65535) {
    fail(text, std::string(kExpected) + ", e.g. 127.0.0.1:50051");
  }
  return {host, port};
}

struct AddrInfoFree {
  void operator()(addrinfo* info) const { freeaddrinfo(info); }
};

// Every address of `host` as (family, text); an IP literal is its own.
std::vector<std::pair<int, std::string>> lookup(const std::string& host, const std::string& text) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const int error = getaddrinfo(host.c_str(), nullptr, &hints, &found);
  if (error != 0) fail(text, "cannot resolve '" + host + "' (" + gai_strerror(error) + ")");
  const std::unique_ptr<addrinfo, AddrInfoFree> owner(found);
  std::vector<std::pair<int, std::string>> addresses;
  for (const addrinfo* info = found; info != nullptr; info = info->ai_next) {
    std::array<char, NI_MAXHOST> buffer{};
    if ((info->ai_family == AF_INET || info->ai_family == AF_INET6) &&
        getnameinfo(info->ai_addr, info->ai_addrlen, buffer.data(), buffer.size(), nullptr, 0,
                    NI_NUMERICHOST) == 0) {
      addresses.emplace_back(info->ai_family, buffer.data());
    }
  }
  return addresses;
}

bool is_ip_literal(const std::string& host) {
  std::array<unsigned char, sizeof(in6_addr)> buffer{};
  return inet_pton(AF_INET, host.c_str(), buffer.data()) == 1 ||
         inet_pton(AF_INET6, host.c_str(), buffer.data()) == 1;
}

// One ipv4: or ipv6: target listing every address of every HOST:PORT.
std::string resolved(const std::vector<HostPort>& parts, const std::string& text) {
  std::vector<std::string> v4, v6;
  bool all_v4 = true, all_v6 = true;
  for (const HostPort& part : parts) {
    bool has_v4 = false, has_v6 = false;
    for (const auto& [family, ip] : lookup(part.host, text)) {
      const bool is_v4 = family == AF_INET;
      (is_v4 ? has_v4 : has_v6) = true;
      const std::string entry = is_v4 ? ip + ":" + part.port : "[" + ip + "]:" + part.port;
      auto& list = is_v4 ? v4 : v6;
      if (std::find(list.begin(), list.end(), entry) == list.end()) list.push_back(entry);
    }
    all_v4 = all_v4 && has_v4;
    all_v6 = all_v6 && has_v6;
  }
  // One gRPC target has one scheme: IPv4 when every host has an IPv4 address, else IPv6.
  if (!all_v4 && !all_v6) {
    fail(text,
         "the hosts mix IPv4-only and IPv6-only addresses; list hosts of one family, or use a "
         "name with both");
  }
  const auto& list = all_v4 ? v4 : v6;
  std::string target = all_v4 ? "ipv4:" : "ipv6:";
  for (std::size_t i = 0; i < list.size(); ++i) target += (i ? "," : "") + list[i];
  return target;
}

}  // namespace

Targets parse_targets(const std::string& text) {
  for (const char* scheme : kSchemes) {
    if (!starts_with(text, scheme)) continue;
    const std::string rest = text.substr(text.find(':') + 1);
    if (rest.find_first_not_of('/') == std::string::npos) {
      fail(text, std::string("no address after the scheme; ") + kExpected);
    }
    return {text, text, 0, std::nullopt, {}};
  }
  std::vector<HostPort> parts;
  std::vector<std::string> listed;
  std::size_t start = 0;
  while (true) {
    const auto comma = text.find(',', start);
    listed.push_back(trimmed(text.substr(start, comma - start)));
    parts.push_back(host_port(listed.back(), text));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  if (parts.size() == 1) return {text, text, 1, std::nullopt, {text}};
  // TLS checks the server's certificate against the name written, not the address found.
  std::optional<std::string> tls_name;
  if (!is_ip_literal(parts.front().host)) tls_name = parts.front().host;
  return {text, resolved(parts, text), static_cast<int>(parts.size()), tls_name, listed};
}

}  // namespace scratchnet
