#include "security.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <ios>
#include <iterator>
#include <memory>
#include <new>
#include <vector>

#include "errors.h"

namespace scratchnet {
namespace {

std::string read_file(const std::string& flag, const std::string& path) {
  // An ifstream opens a folder without complaint and throws a bare "Is a directory" on reading.
  std::error_code ignored;
  if (std::filesystem::is_directory(path, ignored)) {
    throw InputError(flag + " " + path + ": it is a folder, expected a file");
  }
  std::ifstream file(path, std::ios::binary);
  if (file) {
    try {
      std::string content{std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>()};
      if (!file.bad()) return content;
    } catch (const std::ios_base::failure&) {
      // A failed read (EIO, ...): reported below with errno, like a failed open.
    }
  }
  throw InputError(flag + " " + path + ": cannot read it (" + std::strerror(errno) + ")");
}

// gRPC parses the TLS files only when it connects, and reports a bad one as an unreachable
// server (UNAVAILABLE: empty address list). So they are parsed here with OpenSSL, which gRPC
// links anyway (libgrpc-dev depends on libssl-dev).
using Bio = std::unique_ptr<BIO, decltype(&BIO_free)>;
using Certificate = std::unique_ptr<X509, decltype(&X509_free)>;
using PrivateKey = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;

// An encrypted PEM fails to parse instead of making OpenSSL ask for a password on the terminal
// (gRPC takes no password either).
int no_password(char*, int, int, void*) { return -1; }

Bio memory_bio(const std::string& where, const std::string& pem) {
  if (pem.size() > static_cast<std::size_t>(INT_MAX)) {
    throw InputError(where + ": too large for a PEM file");
  }
  Bio bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), &BIO_free);
  if (!bio) throw std::bad_alloc();
  return bio;
}

// Why OpenSSL's last call failed ("bad end line", "bad base64 decode", ...); empties its queue.
std::string openssl_reason() {
  const unsigned long error = ERR_peek_last_error();
  ERR_clear_error();
  // OpenSSL 3's key decoders say "unsupported" of a key that is cut short or garbled.
  if (ERR_GET_LIB(error) == ERR_LIB_OSSL_DECODER) return "damaged or incomplete";
  const char* reason = ERR_reason_error_string(error);
  return reason ? reason : "unknown error";
}

// True when OpenSSL's last PEM read failed only because no further block of the kind was left.
bool at_end_of_blocks() {
  const unsigned long error = ERR_peek_last_error();
  return ERR_GET_LIB(error) == ERR_LIB_PEM && ERR_GET_REASON(error) == PEM_R_NO_START_LINE;
}

// Every certificate of a PEM file, in order (for --tls-cert, its own first); blocks of other
// kinds are skipped, as gRPC skips them, but a damaged block of any kind is an error.
std::vector<Certificate> parse_certificates(const std::string& where, const std::string& pem) {
  ERR_clear_error();
  const Bio bio = memory_bio(where, pem);
  std::vector<Certificate> certificates;
  while (X509* certificate = PEM_read_bio_X509_AUX(bio.get(), nullptr, no_password, nullptr)) {
    certificates.emplace_back(certificate, &X509_free);
  }
  if (certificates.empty() && at_end_of_blocks()) {
    ERR_clear_error();
    throw InputError(where +
                     ": not a PEM certificate (expected a '-----BEGIN CERTIFICATE-----' block)");
  }
  if (!at_end_of_blocks()) {
    throw InputError(where + ": not a readable certificate (" + openssl_reason() +
                     "), expected complete PEM '-----BEGIN CERTIFICATE-----' ... "
                     "'-----END CERTIFICATE-----' blocks");
  }
  ERR_clear_error();
  return certificates;
}

PrivateKey parse_private_key(const std::string& where, const std::string& pem) {
  ERR_clear_error();
  const Bio bio = memory_bio(where, pem);
  PrivateKey key(PEM_read_bio_PrivateKey(bio.get(), nullptr, no_password, nullptr),
                 &EVP_PKEY_free);
  if (key) return key;
  const std::string reason = openssl_reason();
  // OpenSSL 3 reports a file without a key block through its decoders, not as "no start line".
  if (pem.find("PRIVATE KEY-----") == std::string::npos) {
    throw InputError(where + ": not a PEM private key (expected a "
                             "'-----BEGIN ... PRIVATE KEY-----' block)");
  }
  if (pem.find("ENCRYPTED") != std::string::npos) {
    throw InputError(where + ": an encrypted private key, expected an unencrypted PEM private key "
                             "(this client takes no password)");
  }
  throw InputError(where + ": not a readable private key (" + reason +
                   "), expected a complete, unencrypted PEM private key");
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
    const std::string where = "--tls-ca " + *options.tls_ca_path;
    security.tls = true;
    security.root_certificates = read_file("--tls-ca", *options.tls_ca_path);
    parse_certificates(where, security.root_certificates);
  }
  if (options.tls_cert_path && options.tls_key_path) {
    const std::string cert_where = "--tls-cert " + *options.tls_cert_path;
    const std::string key_where = "--tls-key " + *options.tls_key_path;
    security.tls = true;
    security.client_certificate = read_file("--tls-cert", *options.tls_cert_path);
    const auto chain = parse_certificates(cert_where, security.client_certificate);
    security.client_key = read_file("--tls-key", *options.tls_key_path);
    const PrivateKey key = parse_private_key(key_where, security.client_key);
    // Else the server sees a handshake it cannot verify, and we an unreachable server.
    if (X509_check_private_key(chain.front().get(), key.get()) != 1) {
      ERR_clear_error();
      throw InputError(key_where + ": not the private key of the certificate in " + cert_where +
                       ", expected that certificate's key");
    }
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
