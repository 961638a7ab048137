// TLS 1.3 for the QUIC endpoint through GnuTLS (ngtcp2's crypto helper for GnuTLS does the QUIC glue).
// Server: one credentials object per certificate; a renewed certificate gets a new one for new handshakes,
// live connections keep theirs (shared_ptr). Client: verification against a CA (the given PEM, else the
// system store) with the host name or IP, or, when pins are given, the SHA-256 of the leaf (DER) must be one
// of them and the leaf valid now. There is no way to turn verification off.
#pragma once

#include <gnutls/gnutls.h>

#include <array>
#include <memory>
#include <string>
#include <vector>

namespace quicgate {

struct Credentials {
  gnutls_certificate_credentials_t cred = nullptr;
  ~Credentials();
};

struct ClientVerify {
  std::string host;  // name or IP literal checked against the certificate (CA mode)
  std::vector<std::array<uint8_t, 32>> pins;
};

// Server credentials from PEM; empty error on success.
std::shared_ptr<Credentials> ServerCredentials(const std::string& certPem, const std::string& keyPem, std::string* error);
// Client credentials: the CA PEM (empty: the system store).
std::shared_ptr<Credentials> ClientCredentials(const std::string& caPem, std::string* error);

// A session for one connection with `alpn`; `ref` is ngtcp2's conn ref (gnutls_session_set_ptr).
// Client: `verify` must outlive the session. Returns nullptr with `error` set on failure.
gnutls_session_t NewSession(bool server, const Credentials& cred, const std::string& alpn, void* ref,
                            const ClientVerify* verify, std::string* error);

}  // namespace quicgate
