// Optional phase timing of the fused loops: RNNKIT_FUSED_PROFILE=1 prints, per call, the milliseconds
// spent in the per-step GEMMs, the per-step pointwise passes, the backward's pass after the loop and
// the rest (mostly the weight-gradient GEMMs) on stderr.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

namespace rnnkit {

struct Prof {
  bool on;
  double gemm = 0, pointwise = 0, other = 0, after = 0, loop = 0;  // loop: wall of a split loop
  std::chrono::steady_clock::time_point last;
  Prof() : on(std::getenv("RNNKIT_FUSED_PROFILE") != nullptr) {
    if (on) last = std::chrono::steady_clock::now();
  }
  inline void lap(double& into) {
    if (!on) return;
    auto now = std::chrono::steady_clock::now();
    into += std::chrono::duration<double>(now - last).count();
    last = now;
  }
  void add(const Prof& o) {
    gemm += o.gemm;
    pointwise += o.pointwise;
    other += o.other;
    after += o.after;
  }
  void report(const char* what, int64_t L, int64_t B, int64_t H) const {
    if (on)
      std::fprintf(stderr, "rnnkit fused_cpu %s L=%ld B=%ld H=%ld: step GEMMs %.3f ms, pointwise %.3f ms, "
                   "pointwise after the loop %.3f ms, other %.3f ms, split loop wall %.3f ms\n", what,
                   (long)L, (long)B, (long)H, gemm * 1e3, pointwise * 1e3, after * 1e3, other * 1e3,
                   loop * 1e3);
  }
};

}  // namespace rnnkit
