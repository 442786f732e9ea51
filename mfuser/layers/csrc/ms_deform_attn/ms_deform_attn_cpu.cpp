// Fused CPU sampling of multi-scale deformable attention (Deformable DETR), forward only.
//
// Why our own: mfuser/layers/ms_deform_attn.py samples with F.grid_sample per level and then weights and sums the
// P points, which on a CPU writes and re-reads a (B*M, D, P, Lq) float32 temporary per level; at MFuser's full
// size (6804 queries, 8 heads, 3 levels, 4 points, D = 32) that is most of the pixel decoder's deformable-attention
// time, in fp32 and in bf16 alike (grid_sample has no fast bf16 CPU kernel). Here each (batch, query, head) reads
// its 4 * L * P corner rows of D channels and accumulates the weighted sum in float32 registers, so nothing is
// written but the output. The value may be float32 or bf16 (read as stored, converted in registers). Used for
// inference (no autograd); training goes through the PyTorch path, whose autograd gives the gradients.
//
// Bilinear sampling as grid_sample(align_corners=False, padding_mode="zeros"): pixel coordinates
// x = loc_x * W - 0.5, y = loc_y * H - 0.5; each of the 4 neighbours inside the map contributes with its bilinear
// weight, the others with zero. A location whose neighbourhood lies wholly outside (or that is NaN) contributes 0.

#include "ms_deform_attn_cpu.h"

#include <cmath>
#include <cstring>
#include <vector>

// As in the selective scan: on x86-64 the per-query function is compiled for AVX-512, AVX2+FMA and the baseline
// and picked at run time (selective_scan_cpu_level(), which checks the CPU and the OS).
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(MFUSER_NO_X86_DISPATCH)
#define MFUSER_DEFORM_DISPATCH 1
#else
#define MFUSER_DEFORM_DISPATCH 0
#endif
#define MFUSER_DEFORM_INLINE inline __attribute__((always_inline))

namespace mfuser {
namespace {

MFUSER_DEFORM_INLINE float load_float(const float* p) { return *p; }

MFUSER_DEFORM_INLINE float load_float(const bf16* p) {
  const uint32_t b = static_cast<uint32_t>(p->bits) << 16;
  float f;
  std::memcpy(&f, &b, sizeof(f));
  return f;
}

// acc[0..D) += w * row[0..D) (row of type T). Plain loops over a contiguous row: the compiler vectorises them
// (fully unrolled when the channel count DC is known at compile time; DC = 0: a.D at run time).
template <int DC, typename T>
MFUSER_DEFORM_INLINE void axpy(float* __restrict acc, float w, const T* __restrict row, int64_t D) {
  const int64_t n = DC > 0 ? DC : D;
  for (int64_t d = 0; d < n; ++d) acc[d] += w * load_float(row + d);
}

template <int DC, typename T>
MFUSER_DEFORM_INLINE void fwd_query_impl(const DeformArgsT<T>& a, int64_t bq, float* acc) {
  const int64_t b = bq / a.Lq;
  const int64_t M = a.M, D = DC > 0 ? DC : a.D, L = a.L, P = a.P;
  const int64_t row_stride = M * D;  // between consecutive tokens of the value
  for (int64_t m = 0; m < M; ++m) {
    std::memset(acc, 0, sizeof(float) * D);
    const int64_t base = (bq * M + m) * L * P;  // index of (b, q, m, l=0, p=0) in attn; loc has 2x that
    for (int64_t l = 0; l < L; ++l) {
      const int64_t H = a.shapes[2 * l], W = a.shapes[2 * l + 1];
      const T* level = a.value + (b * a.S + a.starts[l]) * row_stride + m * D;
      for (int64_t p = 0; p < P; ++p) {
        const int64_t i = base + l * P + p;
        const float w = a.attn[i];
        const float x = a.loc[2 * i] * static_cast<float>(W) - 0.5f;
        const float y = a.loc[2 * i + 1] * static_cast<float>(H) - 0.5f;
        if (!(x > -1.0f && y > -1.0f && x < static_cast<float>(W) && y < static_cast<float>(H))) continue;
        const float xf = std::floor(x), yf = std::floor(y);
        const int64_t x0 = static_cast<int64_t>(xf), y0 = static_cast<int64_t>(yf);
        const float fx = x - xf, fy = y - yf;
        const float wy[2] = {1.0f - fy, fy}, wx[2] = {1.0f - fx, fx};
        for (int dy = 0; dy < 2; ++dy) {
          const int64_t yy = y0 + dy;
          if (yy < 0 || yy >= H) continue;
          for (int dx = 0; dx < 2; ++dx) {
            const int64_t xx = x0 + dx;
            if (xx < 0 || xx >= W) continue;
            axpy<DC>(acc, w * wy[dy] * wx[dx], level + (yy * W + xx) * row_stride, D);
          }
        }
      }
    }
    std::memcpy(a.out + (bq * M + m) * D, acc, sizeof(float) * D);
  }
}

// channels per head known at compile time for the common widths (MFuser: 256 / 8 heads = 32)
#define MFUSER_DEFORM_SWITCH_D(...)                         \
  switch (a.D) {                                            \
    case 32: fwd_query_impl<32>(__VA_ARGS__); break;        \
    case 16: fwd_query_impl<16>(__VA_ARGS__); break;        \
    case 64: fwd_query_impl<64>(__VA_ARGS__); break;        \
    default: fwd_query_impl<0>(__VA_ARGS__); break;         \
  }

template <typename T>
void fwd_query_base(const DeformArgsT<T>& a, int64_t bq, float* acc) { MFUSER_DEFORM_SWITCH_D(a, bq, acc) }
#if MFUSER_DEFORM_DISPATCH
template <typename T>
__attribute__((target("avx2,fma"))) void fwd_query_avx2(const DeformArgsT<T>& a, int64_t bq, float* acc) {
  MFUSER_DEFORM_SWITCH_D(a, bq, acc)
}
template <typename T>
__attribute__((target("avx512f,avx2,fma"))) void fwd_query_avx512(const DeformArgsT<T>& a, int64_t bq, float* acc) {
  MFUSER_DEFORM_SWITCH_D(a, bq, acc)
}
#endif

template <typename T>
void fwd_all(const DeformArgsT<T>& a, int nthreads) {
  void (*fwd_query)(const DeformArgsT<T>&, int64_t, float*) = fwd_query_base<T>;
#if MFUSER_DEFORM_DISPATCH
  const int level = selective_scan_cpu_level();
  if (level == 2) fwd_query = fwd_query_avx512<T>;
  if (level == 1) fwd_query = fwd_query_avx2<T>;
#endif
  const int64_t n = a.B * a.Lq;
#pragma omp parallel num_threads(nthreads)
  {
    std::vector<float> acc(static_cast<size_t>(a.D));
    // dynamic: on a shared machine a preempted thread does not hold up the others (every query is independent)
#pragma omp for schedule(dynamic, 64)
    for (int64_t bq = 0; bq < n; ++bq) fwd_query(a, bq, acc.data());
  }
}

}  // namespace

void ms_deform_attn_fwd_cpu(const DeformArgsT<float>& a, int nthreads) { fwd_all(a, nthreads); }

void ms_deform_attn_fwd_cpu_bf16(const DeformArgsT<bf16>& a, int nthreads) { fwd_all(a, nthreads); }

}  // namespace mfuser
