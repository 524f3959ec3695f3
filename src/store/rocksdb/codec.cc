#include "store/rocksdb/codec.h"

namespace ds::rocks {
namespace {

void put_be64(std::string& out, uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8)
    out.push_back(static_cast<char>((v >> shift) & 0xff));
}

uint64_t get_be64(std::string_view in) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<uint8_t>(in[i]);
  return v;
}

}  // namespace

std::string meta_key(std::string_view path) {
  std::string k("M");
  k.append(path);
  return k;
}

std::string producer_prefix(uint64_t id) {
  std::string k("P");
  put_be64(k, id);
  return k;
}

std::string producer_key(uint64_t id, std::string_view producer_id) {
  std::string k = producer_prefix(id);
  k.append(producer_id);
  return k;
}

std::string data_prefix(uint64_t id) {
  std::string k("D");
  put_be64(k, id);
  return k;
}

std::string data_key(uint64_t id, uint64_t position) {
  std::string k = data_prefix(id);
  put_be64(k, position);
  return k;
}

uint64_t data_key_position(std::string_view key) { return get_be64(key.substr(key.size() - 8)); }

}  // namespace ds::rocks
