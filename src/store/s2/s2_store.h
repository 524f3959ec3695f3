#pragma once
// The S2 storage engine: S2 is the source of truth and dstreamd nodes are
// stateless; any number of nodes can serve one basin at once.
//
// One Durable Stream path is one S2 stream of the same name. Its records are
// data records (the bytes of one append, with the writer state that admitted
// them in headers) and control records (a stream's creation, closure,
// deletion, fork references, TTL renewals). Every node folds the records it
// reads into the same state, and every write is a conditional append
// (`match_seq_num` = the tail the node has folded up to): a node that loses
// the race reads forward, folds what the others wrote, decides again and
// retries. Idempotent producers and Stream-Seq are therefore exactly-once
// across nodes without a coordinator. The mapping is written down in
// docs/s2-mapping.md.

#include <memory>

#include "common/clock.h"
#include "s2/s2_api.h"
#include "store/stream_store.h"

namespace ds {

struct S2StoreOptions {
  s2::S2Api* api = nullptr;  ///< must outlive the store
  const Clock* clock = &SystemClock::instance();
  unsigned threads = 32;  ///< workers that run requests (they wait on S2 round trips)
  int max_conflict_retries = 32;
};

std::unique_ptr<StreamStore> make_s2_store(const S2StoreOptions& options);

}  // namespace ds
