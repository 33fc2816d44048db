// How the fused loops use the threads: a pointwise pass over rows in tasks (for_rows, grain), and the
// batch split into independent chunks that each run the whole time loop (batch_chunks, over_batch).
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>

#include "profiler.h"

namespace rnnkit {

// Rows per parallel task for a pointwise pass whose rows cost `per_row` element-operations. The
// pointwise passes are cheap next to the per-step GEMM; on 2 threads, waking the second thread for
// them costs more than it saves (and hurts badly on a busy machine), so a step's pointwise pass runs
// on one thread unless it is large: 2^19 element-operations per task splits the LSTM's pass (32 H per
// row) from B x H = 64 x 512 on, where it was measured to pay (layer-norm LSTM 1.32x -> 1.15x
// torch.nn.LSTM at (200,64,512,512), 2 threads), and leaves 64 x 256 on one thread.
// RNNKIT_FUSED_GRAIN overrides the threshold (for tuning).
inline int64_t grain(int64_t per_row) {
  static const int64_t work = [] {
    const char* s = std::getenv("RNNKIT_FUSED_GRAIN");
    return s ? std::max<int64_t>(std::atoll(s), 1) : int64_t(1) << 19;
  }();
  return std::max<int64_t>(work / std::max<int64_t>(per_row, 1), 1);
}

// rows [0, n) in tasks of `g` rows; fn(b0, b1, slot) where slot < slots indexes per-thread scratch.
// One task runs inline (slot 0) without entering a parallel region.
template <typename F>
inline void for_rows(int64_t n, int64_t g, int64_t slots, const F& fn) {
  if (n <= g || slots <= 1) {
    fn(int64_t(0), n, int64_t(0));
    return;
  }
  at::parallel_for(0, n, g, [&](int64_t b0, int64_t b1) {
    const int64_t slot = at::get_thread_num();
    TORCH_CHECK(slot >= 0 && slot < slots, "fused_cpu: thread slot out of range");
    fn(b0, b1, slot);
  });
}

// ---- splitting the batch over the threads ------------------------------------------------------
// The recurrence of batch row b reads only row b of the previous state (and the shared weights), so
// the batch splits into independent chunks, one per thread, each running the whole time loop with
// single-threaded GEMMs on its rows and its own pointwise pass: no synchronisation per step. Splitting
// each step's GEMM over the threads instead (MKL's own threading) scales worse at these sizes
// (measured, 2 threads: a 32 x 128 x 512 sgemm takes 34 us on both threads, each 16-row half 27.5 us
// on one) and pays a fork/join per step. Chunks keep at least 8 rows (RNNKIT_FUSED_CHUNK_ROWS
// overrides; a large value turns the split off).
inline int64_t batch_chunks(int64_t B) {
  static const int64_t min_rows = [] {
    const char* s = std::getenv("RNNKIT_FUSED_CHUNK_ROWS");
    return s ? std::max<int64_t>(std::atoll(s), 1) : int64_t(8);
  }();
  const int64_t threads = at::get_num_threads();
  if (threads <= 1 || at::in_parallel_region()) return 1;
  return std::max<int64_t>(std::min<int64_t>(threads, B / min_rows), 1);
}

// fn(r0, r1, chunk, prof) for each chunk of rows of [0, B), on its own thread; one chunk runs inline
// (with the caller's prof; with several, chunk 0's timings are reported).
template <typename F>
inline void over_batch(int64_t B, int64_t chunks, Prof& prof, const F& fn) {
  if (chunks <= 1) {
    fn(int64_t(0), B, int64_t(0), prof);
    return;
  }
  at::parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      Prof local;
      const auto start = std::chrono::steady_clock::now();
      fn(B * c / chunks, B * (c + 1) / chunks, c, local);
      if (local.on)
        std::fprintf(stderr, "rnnkit fused_cpu chunk %ld (thread %d): %.3f ms (GEMMs %.3f)\n", (long)c,
                     at::get_thread_num(),
                     std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() * 1e3,
                     local.gemm * 1e3);
      if (c == 0) prof.add(local);
    }
  });
  prof.lap(prof.loop);  // the split loop's wall time (its gemm/pointwise above are chunk 0's)
}

// The rows [r0, r1) of a chunk: inline on the chunk's thread when the batch is split, else (one chunk,
// the whole batch) for_rows over the threads.
template <typename F>
inline void chunk_rows(bool split, int64_t r0, int64_t r1, int64_t chunk, int64_t g, int64_t slots,
                       const F& fn) {
  if (split) {
    fn(r0, r1, chunk);
  } else {
    for_rows(r1, g, slots, fn);
  }
}

}  // namespace rnnkit
