#include "store/rocksdb/codec.h"

namespace ds::rocks {

std::string meta_key(std::string_view path) {
  std::string k("M");
  k.append(path);
  return k;
}

std::string producer_prefix(uint64_t id) {
  std::string k("P");
  k += encode_u64(id);
  return k;
}

std::string producer_key(uint64_t id, std::string_view producer_id) {
  std::string k = producer_prefix(id);
  k.append(producer_id);
  return k;
}

std::string data_prefix(uint64_t id) {
  std::string k("D");
  k += encode_u64(id);
  return k;
}

std::string data_key(uint64_t id, uint64_t position) {
  std::string k = data_prefix(id);
  k += encode_u64(position);
  return k;
}

uint64_t data_key_position(std::string_view key) {
  return decode_u64(key.substr(key.size() - 8)).value_or(0);
}

}  // namespace ds::rocks
