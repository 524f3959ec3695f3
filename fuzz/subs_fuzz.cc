// Subscription bodies a client controls (subs/subscription.h): the PUT
// configuration, an ack/callback body, a POST .../streams list, and a state
// record read back from the store. Properties: a configuration that parses
// is normalised (re-parsing its canonical form gives the same canonical
// form); a state built from it survives to_record -> from_record byte for
// byte; glob matching of fuzzed patterns and paths terminates without a
// sanitizer report.

#include <string>
#include <variant>

#include "fuzz_check.h"
#include "subs/glob.h"
#include "subs/subscription.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ds::subs;
  const std::string_view in = ds::fuzz::as_text(data, size);

  auto config = parse_config(in);
  if (auto* c = std::get_if<Config>(&config)) {
    const std::string canonical = c->canonical();
    auto again = parse_config(canonical);
    FUZZ_CHECK(std::holds_alternative<Config>(again));
    FUZZ_CHECK(std::get<Config>(again).canonical() == canonical);
    FUZZ_CHECK(c->lease_ttl_ms >= kMinLeaseMs && c->lease_ttl_ms <= kMaxLeaseMs);

    State s = create_state("fuzz", *c, "http://h/v1/stream/", 1, c->streams, {});
    if (c->pattern) {
      note_write(s, *c->pattern);
      const bool one = glob_match(*c->pattern, "a/b");
      (void)one;
    }
    auto back = from_record(to_record(s));
    FUZZ_CHECK(back.has_value());
    FUZZ_CHECK(to_record(*back) == to_record(s));
  } else {
    FUZZ_CHECK(!std::get<Problem>(config).code.empty());
  }

  (void)parse_ack(in);
  (void)parse_stream_list(in);
  if (auto s = from_record(in)) (void)to_record(*s);

  // The input split into a pattern and a path.
  const size_t cut = in.find('\n');
  if (cut != std::string_view::npos) {
    auto pattern = in.substr(0, cut), path = in.substr(cut + 1);
    const bool matched = glob_match(pattern, path);
    (void)matched;
    (void)glob_literal_prefix(pattern);
  }
  return 0;
}
