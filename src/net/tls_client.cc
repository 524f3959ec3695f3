#include "net/tls_client.h"

namespace ds::net {

std::unique_ptr<boost::asio::ssl::context> make_tls_client_context(const std::string& ca_file,
                                                                   std::string* error) {
  namespace ssl = boost::asio::ssl;
  auto tls = std::make_unique<ssl::context>(ssl::context::tls_client);
  boost::system::error_code ec;
  tls->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                       ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1,
                   ec);
  if (!ec) tls->set_default_verify_paths(ec);
  if (!ec && !ca_file.empty()) tls->load_verify_file(ca_file, ec);
  if (!ec) tls->set_verify_mode(ssl::verify_peer, ec);
  if (ec) {
    *error = ec.message();
    return nullptr;
  }
  return tls;
}

}  // namespace ds::net
