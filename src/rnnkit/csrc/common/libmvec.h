// Vectorised exp/log/tanh for rnnkit's C++ extensions. glibc's libmvec provides SIMD variants of
// these, but its declarations are only visible under __FAST_MATH__, which -fno-finite-math-only (set
// by rnnkit._ext) turns off. Declaring them here lets GCC vectorise the pointwise loops (calls to
// _ZGVeN16v_expf etc., resolved from libmvec). Shared by every extension (rnnkit._ext puts this
// folder on the include path and in each extension's cache key).
#pragma once

#if defined(__x86_64__) && defined(__GLIBC__) && defined(__GNUC__) && !defined(__clang__) && \
    !defined(__FAST_MATH__)
extern "C" {
__attribute__((__simd__("notinbranch"))) float expf(float) noexcept;
__attribute__((__simd__("notinbranch"))) float logf(float) noexcept;
__attribute__((__simd__("notinbranch"))) float tanhf(float) noexcept;
__attribute__((__simd__("notinbranch"))) double exp(double) noexcept;
__attribute__((__simd__("notinbranch"))) double log(double) noexcept;
__attribute__((__simd__("notinbranch"))) double tanh(double) noexcept;
}
#endif
