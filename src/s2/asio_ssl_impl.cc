// The compiled part of asio::ssl (BOOST_ASIO_SEPARATE_COMPILATION); lives in
// ds_asio next to server/asio_impl.cc.
#include <boost/asio/ssl/impl/src.hpp>
