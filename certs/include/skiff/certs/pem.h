#pragma once
// PEM encoding and decoding of certificates and keys, and the careful file writes skiff-certs relies on.
#include <sys/types.h>
#include <string>
#include <vector>

#include "skiff/certs/openssl_ptr.h"
#include "skiff/certs/result.h"

namespace skiff::certs {

// All certificates in a PEM file, in file order; an error (naming `path`) when the file is missing,
// unreadable, holds no certificate or holds a malformed block.
Result<std::vector<X509Ptr>> readCertsFile(const std::string& path);
// The same from a string; `name` is used in error messages.
Result<std::vector<X509Ptr>> parseCerts(const std::string& pem, const std::string& name);

// The first private key in a PEM file (PKCS#8, or traditional RSA/EC).
Result<EvpPkeyPtr> readKeyFile(const std::string& path);
Result<EvpPkeyPtr> parseKey(const std::string& pem, const std::string& name);

std::string certToPem(X509* cert);
std::string certsToPem(const std::vector<X509*>& certs);
// PKCS#8 ("BEGIN PRIVATE KEY"), what Envoy and Istio read.
std::string keyToPem(EVP_PKEY* key);

// True when `key` is the private half of `cert`'s public key.
bool keyMatchesCert(X509* cert, EVP_PKEY* key);

// The most recent OpenSSL error (and clears the queue), for messages.
std::string lastOpenSslError();

Result<std::string> readFile(const std::string& path);
// Creates `path` with O_EXCL and `mode` (never chmod afterwards), writes `data` and fsyncs it.
Status writeNewFile(const std::string& path, const std::string& data, mode_t mode);
// Writes a temporary file next to `path` (O_EXCL, `mode`), fsyncs it and renames it over `path`; the
// directory is fsynced so the rename survives a crash.
Status replaceFile(const std::string& path, const std::string& data, mode_t mode);
// mkdir -p with 0755 for each directory it creates.
Status makeDirs(const std::string& path);
Status fsyncDir(const std::string& dir);

}  // namespace skiff::certs
