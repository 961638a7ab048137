#include "tls.h"

#include <arpa/inet.h>
#include <gnutls/crypto.h>
#include <gnutls/x509.h>
#include <ngtcp2/ngtcp2_crypto_gnutls.h>

#include <cstring>
#include <ctime>

namespace quicgate {

namespace {

constexpr const char* kPriority = "NORMAL:-VERS-ALL:+VERS-TLS1.3";
// The session's user pointer is ngtcp2's conn ref, so the pins ride in the resumption-db pointer, which a
// client session without a session cache never uses.
int VerifyPinned(gnutls_session_t session) {
  auto* verify = static_cast<const ClientVerify*>(gnutls_db_get_ptr(session));
  if (verify == nullptr) return GNUTLS_E_CERTIFICATE_ERROR;
  unsigned count = 0;
  const gnutls_datum_t* chain = gnutls_certificate_get_peers(session, &count);
  if (chain == nullptr || count == 0) return GNUTLS_E_CERTIFICATE_ERROR;
  uint8_t digest[32];
  if (gnutls_hash_fast(GNUTLS_DIG_SHA256, chain[0].data, chain[0].size, digest) != 0) return GNUTLS_E_CERTIFICATE_ERROR;
  bool pinned = false;
  for (const auto& pin : verify->pins) pinned = pinned || std::memcmp(pin.data(), digest, 32) == 0;
  if (!pinned) return GNUTLS_E_CERTIFICATE_ERROR;
  gnutls_x509_crt_t leaf;
  if (gnutls_x509_crt_init(&leaf) != 0) return GNUTLS_E_CERTIFICATE_ERROR;
  int rc = gnutls_x509_crt_import(leaf, &chain[0], GNUTLS_X509_FMT_DER);
  time_t now = time(nullptr);
  bool valid = rc == 0 && gnutls_x509_crt_get_activation_time(leaf) <= now && gnutls_x509_crt_get_expiration_time(leaf) > now;
  gnutls_x509_crt_deinit(leaf);
  return valid ? 0 : GNUTLS_E_CERTIFICATE_ERROR;
}

bool IsIpLiteral(const std::string& host) {
  uint8_t buf[16];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

}  // namespace

Credentials::~Credentials() {
  if (cred != nullptr) gnutls_certificate_free_credentials(cred);
}

std::shared_ptr<Credentials> ServerCredentials(const std::string& certPem, const std::string& keyPem, std::string* error) {
  auto result = std::make_shared<Credentials>();
  if (gnutls_certificate_allocate_credentials(&result->cred) != 0) {
    *error = "gnutls_certificate_allocate_credentials failed";
    return nullptr;
  }
  gnutls_datum_t cert{reinterpret_cast<unsigned char*>(const_cast<char*>(certPem.data())), static_cast<unsigned>(certPem.size())};
  gnutls_datum_t key{reinterpret_cast<unsigned char*>(const_cast<char*>(keyPem.data())), static_cast<unsigned>(keyPem.size())};
  int rc = gnutls_certificate_set_x509_key_mem(result->cred, &cert, &key, GNUTLS_X509_FMT_PEM);
  if (rc < 0) {
    *error = std::string("certificate or key: ") + gnutls_strerror(rc);
    return nullptr;
  }
  return result;
}

std::shared_ptr<Credentials> ClientCredentials(const std::string& caPem, std::string* error) {
  auto result = std::make_shared<Credentials>();
  if (gnutls_certificate_allocate_credentials(&result->cred) != 0) {
    *error = "gnutls_certificate_allocate_credentials failed";
    return nullptr;
  }
  int rc;
  if (caPem.empty()) {
    rc = gnutls_certificate_set_x509_system_trust(result->cred);
  } else {
    gnutls_datum_t ca{reinterpret_cast<unsigned char*>(const_cast<char*>(caPem.data())), static_cast<unsigned>(caPem.size())};
    rc = gnutls_certificate_set_x509_trust_mem(result->cred, &ca, GNUTLS_X509_FMT_PEM);
  }
  if (rc < 0) {
    *error = std::string("CA: ") + gnutls_strerror(rc);
    return nullptr;
  }
  if (rc == 0 && !caPem.empty()) {
    *error = "CA: no certificate in the PEM";
    return nullptr;
  }
  return result;
}

gnutls_session_t NewSession(bool server, const Credentials& cred, const std::string& alpn, void* ref,
                            const ClientVerify* verify, std::string* error) {
  gnutls_session_t session = nullptr;
  int rc = gnutls_init(&session, (server ? GNUTLS_SERVER : GNUTLS_CLIENT) | GNUTLS_ENABLE_EARLY_DATA | GNUTLS_NO_END_OF_EARLY_DATA);
  if (rc != 0) {
    *error = gnutls_strerror(rc);
    return nullptr;
  }
  auto fail = [&](const char* what, int code) {
    *error = std::string(what) + ": " + gnutls_strerror(code);
    gnutls_deinit(session);
    return nullptr;
  };
  if ((rc = gnutls_priority_set_direct(session, kPriority, nullptr)) != 0) return fail("priority", rc);
  rc = server ? ngtcp2_crypto_gnutls_configure_server_session(session) : ngtcp2_crypto_gnutls_configure_client_session(session);
  if (rc != 0) return fail("ngtcp2 session", GNUTLS_E_INTERNAL_ERROR);
  gnutls_session_set_ptr(session, ref);
  if ((rc = gnutls_credentials_set(session, GNUTLS_CRD_CERTIFICATE, cred.cred)) != 0) return fail("credentials", rc);
  gnutls_datum_t proto{reinterpret_cast<unsigned char*>(const_cast<char*>(alpn.data())), static_cast<unsigned>(alpn.size())};
  if ((rc = gnutls_alpn_set_protocols(session, &proto, 1, GNUTLS_ALPN_MANDATORY)) != 0) return fail("alpn", rc);
  if (!server) {
    if (!IsIpLiteral(verify->host)) gnutls_server_name_set(session, GNUTLS_NAME_DNS, verify->host.data(), verify->host.size());
    if (!verify->pins.empty()) {
      gnutls_db_set_ptr(session, const_cast<ClientVerify*>(verify));
      gnutls_session_set_verify_function(session, VerifyPinned);
    } else {
      // Chain against the CA, and the host name or IP address against the certificate's names.
      gnutls_session_set_verify_cert(session, verify->host.c_str(), 0);
    }
  }
  return session;
}

}  // namespace quicgate
