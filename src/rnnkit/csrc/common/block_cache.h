// Large buffers (the activations saved for backward, the gradient buffers) come from a small cache of
// freed blocks rather than from malloc: glibc maps blocks of this size anew (or trims its heap) after
// a free, depending on its heap's history, and then each call pays a page fault per 4 KiB, first
// touched inside the time loop; under load that costs as much as the pointwise work. A block goes
// back to the cache when its tensor dies. The free blocks kept total at most the peak of the blocks in
// use at once (so memory stays within twice what the calls needed, whatever the mix of sizes) and at
// most 1 GiB (RNNKIT_FUSED_CACHE_MB overrides; 0 turns the cache off).
#pragma once

#include <ATen/ATen.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <mutex>
#include <unordered_map>

namespace rnnkit {

class BlockCache {
 public:
  static BlockCache& get() {
    static BlockCache* c = new BlockCache;  // never destroyed: tensors may die at exit
    return *c;
  }
  void* take(size_t n) {
    {
      std::lock_guard<std::mutex> g(mu_);
      auto it = free_.lower_bound(n);
      if (it != free_.end() && it->first <= n + n / 4) {  // best fit, at most 25% wasted
        void* p = it->second;
        held_ -= it->first;
        size_[p] = it->first;
        use(it->first);
        free_.erase(it);
        return p;
      }
    }
    void* p = std::aligned_alloc(kAlign, round(n));
    TORCH_CHECK(p != nullptr, "rnnkit: out of memory allocating ", n, " bytes");
    std::lock_guard<std::mutex> g(mu_);
    size_[p] = round(n);
    use(round(n));
    return p;
  }
  void give(void* p) {
    std::lock_guard<std::mutex> g(mu_);
    auto it = size_.find(p);
    const size_t n = it->second;
    size_.erase(it);
    live_ -= n;
    free_.emplace(n, p);
    held_ += n;
    while (held_ > std::min(limit(), peak_)) {  // drop the largest free blocks first
      auto last = std::prev(free_.end());
      held_ -= last->first;
      std::free(last->second);
      free_.erase(last);
    }
  }

 private:
  static constexpr size_t kAlign = 64;
  static size_t limit() {
    static const size_t n = [] {
      const char* s = std::getenv("RNNKIT_FUSED_CACHE_MB");
      return s ? size_t(std::max<long long>(std::atoll(s), 0)) << 20 : size_t(1) << 30;
    }();
    return n;
  }
  static size_t round(size_t n) { return (std::max<size_t>(n, 1) + kAlign - 1) / kAlign * kAlign; }
  std::mutex mu_;
  std::multimap<size_t, void*> free_;
  std::unordered_map<void*, size_t> size_;
  size_t held_ = 0, live_ = 0, peak_ = 0;  // bytes: free in the cache, in use, most in use at once
  void use(size_t n) {
    live_ += n;
    peak_ = std::max(peak_, live_);
  }
};

// A tensor of `sizes`: from the block cache from 1 MiB on (malloc keeps smaller blocks mapped).
inline at::Tensor empty_big(at::IntArrayRef sizes, const at::TensorOptions& opts) {
  int64_t numel = 1;
  for (int64_t d : sizes) numel *= d;
  const size_t n = size_t(numel) * opts.dtype().itemsize();
  if (n < (size_t(1) << 20)) return at::empty(sizes, opts);
  void* p = BlockCache::get().take(n);
  return at::from_blob(p, sizes, [](void* q) { BlockCache::get().give(q); }, opts);
}

}  // namespace rnnkit
