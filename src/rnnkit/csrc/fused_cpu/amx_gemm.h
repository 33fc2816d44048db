// The per-step GEMM of a bfloat16 module's loop on AMX tiles (Intel Sapphire Rapids and later):
// C[M, N] (+)= A[M, K] B[K, N] with A (the loop's float32 h or dG rows) rounded to bf16 at each call,
// B (the module's bf16 recurrent weight) laid out once per sequence, float32 accumulation in the tiles.
//
// Why: at (T,B,I,H) = (200,64,512,512) the float32 tile kernel of packed_gemm.h spends ~0.5 ms per
// step and chunk of 32 rows; AVX512-BF16's pair dot product (vdpbf16ps) measured 1.6x slower than it
// (one instruction per cycle does no more multiply-adds than two FMAs), while one AMX TDPBF16PS does a
// 16x16x32 block.
//
// Layout of B: for each block of 32 columns (two 16-column tiles) and each block of 32 rows of K, two
// tiles of 16 rows (pairs of K) x 64 bytes, a row holding 16 columns as (B[2q][j], B[2q+1][j]) pairs
// (the "VNNI" order TDPBF16PS reads). K and N are zero-padded to multiples of 32. A is copied to a
// per-thread bf16 scratch of ceil(M/16)*16 rows (zero rows past M), the tiles write to a per-thread
// float32 scratch, and the real rows and columns are added to (or written into) C.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__AMX_TILE__) && defined(__AMX_BF16__) && defined(__AVX512BF16__)
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
#define RNNKIT_HAVE_AMX 1
#endif

namespace rnnkit_amx {

constexpr int64_t kTile = 16;   // rows of a tile; columns of a C tile
constexpr int64_t kKBlock = 32; // bf16 values of K per A-tile row

struct PackedTiles {
  int64_t K = 0, N = 0, Kp = 0, Np = 0;  // sizes and their padded multiples of 32
  std::vector<uint16_t> data;
  bool empty() const { return data.empty(); }
};

// float32 -> bfloat16, rounding to nearest even (NaN stays NaN)
inline uint16_t to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

// Whether this process may use AMX tiles: built for them, and Linux granted the tile state
// (arch_prctl ARCH_REQ_XCOMP_PERM for XTILEDATA, once per process). RNNKIT_NO_AMX=1 declines.
inline bool available() {
#if defined(RNNKIT_HAVE_AMX)
  static const bool ok = [] {
    const char* off = std::getenv("RNNKIT_NO_AMX");
    if (off && *off) return false;
    constexpr long kReqPerm = 0x1023, kXtileData = 18;
    return syscall(SYS_arch_prctl, kReqPerm, kXtileData) == 0;
  }();
  return ok;
#else
  return false;
#endif
}

// B = W^T for W [N, K] row-major (transposed), or B = W for W [K, N] row-major.
inline void pack(const float* W, int64_t K, int64_t N, bool transposed, PackedTiles& out) {
  out.K = K;
  out.N = N;
  out.Kp = (K + kKBlock - 1) / kKBlock * kKBlock;
  out.Np = (N + 2 * kTile - 1) / (2 * kTile) * (2 * kTile);
  out.data.assign(size_t(out.Kp * out.Np), 0);
  // tile (n block of 16 columns, k block of 32): 16 rows (q) x 32 values, at ((nb * Kp/32 + kb) * 512)
  const int64_t kblocks = out.Kp / kKBlock;
  uint16_t* d = out.data.data();
  auto at = [&](int64_t k, int64_t n) -> uint16_t& {
    return d[((n / kTile) * kblocks + k / kKBlock) * kTile * kKBlock + ((k % kKBlock) / 2) * kKBlock +
             2 * (n % kTile) + (k % 2)];
  };
  if (transposed) {  // read W row by row (contiguous in k)
    for (int64_t n = 0; n < N; ++n)
      for (int64_t k = 0; k < K; ++k) at(k, n) = to_bf16(W[n * K + k]);
  } else {
    for (int64_t k = 0; k < K; ++k)
      for (int64_t n = 0; n < N; ++n) at(k, n) = to_bf16(W[k * N + n]);
  }
}

#if defined(RNNKIT_HAVE_AMX)
struct alignas(64) TileConfig {
  uint8_t palette = 1, start_row = 0, reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

// tmm0-3: C (2 row blocks x 2 column blocks), tmm4-5: A (2 row blocks), tmm6-7: B (2 column blocks)
inline void configure() {
  TileConfig cfg;
  for (int t = 0; t < 8; ++t) {
    cfg.rows[t] = kTile;
    cfg.colsb[t] = 64;
  }
  _tile_loadconfig(&cfg);
}

// C[M, N] = A[M, K] B (+ C if accumulate); A rows at stride lda, C rows at stride ldc.
inline void gemm(int64_t M, const float* A, int64_t lda, const PackedTiles& B, float* C, int64_t ldc,
                 bool accumulate) {
  const int64_t K = B.K, N = B.N, Kp = B.Kp, Np = B.Np, kblocks = Kp / kKBlock;
  const int64_t Mp = (M + 2 * kTile - 1) / (2 * kTile) * (2 * kTile);
  thread_local std::vector<uint16_t> a16;
  thread_local std::vector<float> c32;
  a16.assign(size_t(Mp * Kp), 0);
  if (c32.size() < size_t(Mp * Np)) c32.resize(size_t(Mp * Np));
  for (int64_t r = 0; r < M; ++r) {
    const float* a = A + r * lda;
    uint16_t* out = a16.data() + r * Kp;
    int64_t k = 0;
    for (; k + 16 <= K; k += 16)
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + k),
                          (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(a + k)));
    for (; k < K; ++k) out[k] = to_bf16(a[k]);
  }
  configure();
  const int64_t a_stride = Kp * 2, c_stride = Np * 4;  // bytes
  for (int64_t m0 = 0; m0 < Mp; m0 += 2 * kTile) {
    for (int64_t nb = 0; nb < Np / kTile; nb += 2) {
      _tile_zero(0);
      _tile_zero(1);
      _tile_zero(2);
      _tile_zero(3);
      const uint16_t* b0 = B.data.data() + nb * kblocks * kTile * kKBlock;
      const uint16_t* b1 = b0 + kblocks * kTile * kKBlock;
      for (int64_t kb = 0; kb < kblocks; ++kb) {
        _tile_loadd(4, a16.data() + m0 * Kp + kb * kKBlock, a_stride);
        _tile_loadd(5, a16.data() + (m0 + kTile) * Kp + kb * kKBlock, a_stride);
        _tile_loadd(6, b0 + kb * kTile * kKBlock, 64);
        _tile_loadd(7, b1 + kb * kTile * kKBlock, 64);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
      }
      float* c = c32.data() + m0 * Np + nb * kTile;
      _tile_stored(0, c, c_stride);
      _tile_stored(1, c + kTile, c_stride);
      _tile_stored(2, c + kTile * Np, c_stride);
      _tile_stored(3, c + kTile * Np + kTile, c_stride);
    }
  }
  _tile_release();
  for (int64_t r = 0; r < M; ++r) {
    const float* src = c32.data() + r * Np;
    float* dst = C + r * ldc;
    if (accumulate)
      for (int64_t n = 0; n < N; ++n) dst[n] += src[n];
    else
      std::memcpy(dst, src, sizeof(float) * size_t(N));
  }
}
#else
inline void gemm(int64_t, const float*, int64_t, const PackedTiles&, float*, int64_t, bool) {}
#endif

}  // namespace rnnkit_amx
