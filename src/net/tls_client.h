#pragma once
// The TLS client context every outbound HTTPS client of dstreamd uses (S2,
// webhooks): TLS 1.2 or newer, the system's CAs plus an optional PEM file of
// extra ones, peer verification on. Host-name checks and SNI are per
// connection (the caller's). Part of ds_asio.

#include <boost/asio/ssl/context.hpp>
#include <memory>
#include <string>

namespace ds::net {

/// Null, with *error set, when the CA file cannot be loaded or OpenSSL
/// refuses a setting.
std::unique_ptr<boost::asio::ssl::context> make_tls_client_context(const std::string& ca_file,
                                                                   std::string* error);

}  // namespace ds::net
