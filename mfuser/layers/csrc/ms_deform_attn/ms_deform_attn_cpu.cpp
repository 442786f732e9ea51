// Fused CPU sampling of multi-scale deformable attention (Deformable DETR): forward and backward.
//
// Why our own: mfuser/layers/ms_deform_attn.py samples with F.grid_sample per level and then weights and sums the
// P points, which on a CPU writes and re-reads a (B*M, D, P, Lq) float32 temporary per level, and its autograd
// backward does the same in reverse (grid_sample's backward, the weighting's, copies); at MFuser's full size (6804
// queries, 8 heads, 3 levels, 4 points, D = 32) that is most of the pixel decoder's deformable-attention time, in
// fp32 and in bf16 alike (grid_sample has no fast bf16 CPU kernel). The compiled reference ops (Deformable-DETR,
// mmcv) are CUDA only. Here the forward reads, per (batch, query, head), its 4 * L * P corner rows of D channels
// and accumulates the weighted sum in float32 registers, so nothing is written but the output; the backward
// (below) re-reads the same corners and writes the three gradients directly. The value may be float32 or bf16
// (read as stored, converted in registers); everything else, and every sum, is float32.
//
// Measured: forward + backward per call against the grid_sample path's autograd, in the module docstring of
// mfuser/layers/ms_deform_attn.py.
//
// Bilinear sampling as grid_sample(align_corners=False, padding_mode="zeros"): pixel coordinates
// x = loc_x * W - 0.5, y = loc_y * H - 0.5; each of the 4 neighbours inside the map contributes with its bilinear
// weight, the others with zero. A location whose neighbourhood lies wholly outside (or that is NaN) contributes 0.

#include "ms_deform_attn_cpu.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#if defined(__GNUC__)
#pragma GCC diagnostic ignored "-Wpsabi"  // 16-lane vectors in always-inlined helpers: no ABI crosses them
#endif

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


// ------------------------------------------------------------------------------------------------ backward
// With g = grad_out[b, q, m, :] and a point (l, p) of weight w at pixel coordinates (x, y), fx = x - floor(x),
// fy = y - floor(y), wx = (1 - fx, fx), wy = (1 - fy, fy), and c[dy][dx] = g . V[dy][dx] the dot products of g with
// its 4 corner rows of the value (0 for a corner outside the map, as in the forward):
//   grad_attn  = sum_{dy,dx} wy[dy] * wx[dx] * c[dy][dx]
//   grad_loc_x = w * W * sum_dy wy[dy] * (c[dy][1] - c[dy][0])     (d x / d loc_x = W, d wx / d fx = (-1, 1))
//   grad_loc_y = w * H * sum_dx wx[dx] * (c[1][dx] - c[0][dx])
//   grad_value[corner] += w * wy[dy] * wx[dx] * g
// The first two belong to one point each; the scatter into grad_value is where points collide. The work is split
// over (batch, head) pairs: the task of pair (b, m) owns value[b, :, m, :]'s gradient, accumulates it in a compact
// (S, D) float32 buffer (per thread) and then stores it into grad_value[b, :, m, :], writing every element. No
// atomics and no races, and the summation order does not depend on the thread count as long as there are at least
// as many pairs as threads (bitwise the same result on 1 or 2 threads; MFuser: 8 to 32 pairs). With more threads
// than pairs, the queries of a pair are split into chunks, one buffer each, summed in chunk order at the end
// (deterministic for a given thread count).
// Vectorisation (D a multiple of 16): the 4 dot products of a point are formed in 16-lane vectors and reduced
// together with shuffles (a float reduction is left in order, i.e. scalar, by the compiler without -ffast-math);
// the grad_value update is an explicit 16-lane read-modify-write (the plain loop was left scalar there). Other D:
// plain loops.

// 16 float lanes (GCC/Clang vector extensions: one AVX-512 register, two AVX2 or four SSE ones)
typedef float V16 __attribute__((vector_size(64)));
typedef int I16 __attribute__((vector_size(64)));
typedef uint16_t H16 __attribute__((vector_size(32)));
typedef uint32_t U16 __attribute__((vector_size(64)));
#if defined(__clang__)
#define MFUSER_SHUFFLE(a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#else
#define MFUSER_SHUFFLE(a, b, ...) __builtin_shuffle(a, b, I16{__VA_ARGS__})
#endif

MFUSER_DEFORM_INLINE V16 load16(const float* p) {
  V16 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

MFUSER_DEFORM_INLINE V16 load16(const bf16* p) {
  H16 h;
  std::memcpy(&h, p, sizeof(h));
  return (V16)(__builtin_convertvector(h, U16) << 16);
}

// out[k] = g . rows[k] over DC (a multiple of 16) channels for the 4 corners k (rows[k] == nullptr: 0). The 4
// horizontal sums together: halves (2 two-source shuffles per pair of corners), quarters (2), then within groups of
// 4 lanes (2 one-source shuffles).
template <int DC, typename T>
MFUSER_DEFORM_INLINE void dot4(const float* __restrict g, const T* const* rows, float* out) {
  V16 p[4] = {};
  for (int d0 = 0; d0 < DC; d0 += 16) {
    const V16 gd = load16(g + d0);
    for (int k = 0; k < 4; ++k)
      if (rows[k]) p[k] += gd * load16(rows[k] + d0);
  }
  // a = [p0's 8 half sums | p1's], b = [p2's | p3's]
  const V16 a = MFUSER_SHUFFLE(p[0], p[1], 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23) +
                MFUSER_SHUFFLE(p[0], p[1], 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
  const V16 b = MFUSER_SHUFFLE(p[2], p[3], 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23) +
                MFUSER_SHUFFLE(p[2], p[3], 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
  // c = [p0's 4 quarter sums | p1's | p2's | p3's]
  V16 c = MFUSER_SHUFFLE(a, b, 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27) +
          MFUSER_SHUFFLE(a, b, 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31);
  c += MFUSER_SHUFFLE(c, c, 2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13);
  c += MFUSER_SHUFFLE(c, c, 1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14);
  out[0] = c[0];
  out[1] = c[4];
  out[2] = c[8];
  out[3] = c[12];
}

// g . row over D channels, in order (the D % 16 != 0 case)
template <int DC, typename T>
MFUSER_DEFORM_INLINE float dot(const float* __restrict g, const T* __restrict row, int64_t D) {
  const int64_t n = DC > 0 ? DC : D;
  float s = 0.0f;
  for (int64_t d = 0; d < n; ++d) s += g[d] * load_float(row + d);
  return s;
}

// gv[0..D) += w * g[0..D)
template <int DC>
MFUSER_DEFORM_INLINE void scatter(float* __restrict gv, float w, const float* __restrict g, int64_t D) {
  if constexpr (DC > 0 && DC % 16 == 0) {
    for (int d0 = 0; d0 < DC; d0 += 16) {
      const V16 v = load16(gv + d0) + w * load16(g + d0);
      std::memcpy(gv + d0, &v, sizeof(v));
    }
  } else {
    axpy<DC>(gv, w, g, D);
  }
}

// Queries this far ahead are prefetched: a pair's inputs and outputs are strided by the M heads, and the hardware
// prefetcher missed most of them (full-size backward, one thread: 24.6 -> 17.8 ms).
constexpr int64_t kPrefetchAhead = 4;

MFUSER_DEFORM_INLINE void prefetch_read(const void* p, int64_t bytes) {
  for (int64_t o = 0; o < bytes; o += 64) __builtin_prefetch(static_cast<const char*>(p) + o, 0);
}
MFUSER_DEFORM_INLINE void prefetch_write(const void* p, int64_t bytes) {
  for (int64_t o = 0; o < bytes; o += 64) __builtin_prefetch(static_cast<const char*>(p) + o, 1);
}

// The points of queries [q0, q1) of batch b, head m: writes their grad_loc and grad_attn, and adds their value
// gradient into gv, the (S, D) gradient of value[b, :, m, :].
template <int DC, typename T>
MFUSER_DEFORM_INLINE void bwd_range_impl(const DeformArgsT<T>& a, const DeformGrads& g, int64_t b, int64_t m,
                                         int64_t q0, int64_t q1, float* __restrict gv) {
  const int64_t M = a.M, D = DC > 0 ? DC : a.D, L = a.L, P = a.P, LP = a.L * a.P;
  const int64_t row_stride = M * D;  // between consecutive tokens of the value
  for (int64_t q = q0; q < q1; ++q) {
    const int64_t bqm = (b * a.Lq + q) * M + m;
    if (q + kPrefetchAhead < q1) {
      const int64_t n = bqm + kPrefetchAhead * M;
      prefetch_read(a.loc + 2 * n * LP, 8 * LP);
      prefetch_read(a.attn + n * LP, 4 * LP);
      prefetch_read(g.grad_out + n * D, 4 * D);
      prefetch_write(g.grad_loc + 2 * n * LP, 8 * LP);
      prefetch_write(g.grad_attn + n * LP, 4 * LP);
    }
    const float* go = g.grad_out + bqm * D;
    for (int64_t l = 0; l < L; ++l) {
      const int64_t H = a.shapes[2 * l], W = a.shapes[2 * l + 1];
      const T* level = a.value + (b * a.S + a.starts[l]) * row_stride + m * D;
      float* gv_level = gv + a.starts[l] * D;
      for (int64_t p = 0; p < P; ++p) {
        const int64_t i = bqm * LP + l * P + p;
        const float w = a.attn[i];
        const float x = a.loc[2 * i] * static_cast<float>(W) - 0.5f;
        const float y = a.loc[2 * i + 1] * static_cast<float>(H) - 0.5f;
        float* gl = g.grad_loc + 2 * i;
        if (!(x > -1.0f && y > -1.0f && x < static_cast<float>(W) && y < static_cast<float>(H))) {
          g.grad_attn[i] = 0.0f;  // skipped by the forward: contributes nothing, and no gradient
          gl[0] = 0.0f;
          gl[1] = 0.0f;
          continue;
        }
        const float xf = std::floor(x), yf = std::floor(y);
        const int64_t x0 = static_cast<int64_t>(xf), y0 = static_cast<int64_t>(yf);
        const float fx = x - xf, fy = y - yf;
        const float wy[2] = {1.0f - fy, fy}, wx[2] = {1.0f - fx, fx};
        const T* rows[4];  // corner k = (dy, dx) = (k / 2, k % 2); nullptr outside the map
        for (int k = 0; k < 4; ++k) {
          const int64_t yy = y0 + k / 2, xx = x0 + k % 2;
          rows[k] = nullptr;
          if (yy < 0 || yy >= H || xx < 0 || xx >= W) continue;
          rows[k] = level + (yy * W + xx) * row_stride;
          scatter<DC>(gv_level + (yy * W + xx) * D, w * wy[k / 2] * wx[k % 2], go, D);
        }
        float c[4];
        if constexpr (DC > 0 && DC % 16 == 0) {
          dot4<DC>(go, rows, c);
        } else {
          for (int k = 0; k < 4; ++k) c[k] = rows[k] ? dot<DC>(go, rows[k], D) : 0.0f;
        }
        g.grad_attn[i] = wy[0] * (wx[0] * c[0] + wx[1] * c[1]) + wy[1] * (wx[0] * c[2] + wx[1] * c[3]);
        gl[0] = w * static_cast<float>(W) * (wy[0] * (c[1] - c[0]) + wy[1] * (c[3] - c[2]));
        gl[1] = w * static_cast<float>(H) * (wx[0] * (c[2] - c[0]) + wx[1] * (c[3] - c[1]));
      }
    }
  }
}

#define MFUSER_DEFORM_SWITCH_D_BWD(...)                     \
  switch (a.D) {                                            \
    case 32: bwd_range_impl<32>(__VA_ARGS__); break;        \
    case 16: bwd_range_impl<16>(__VA_ARGS__); break;        \
    case 64: bwd_range_impl<64>(__VA_ARGS__); break;        \
    default: bwd_range_impl<0>(__VA_ARGS__); break;         \
  }

template <typename T>
using BwdRangeFn = void (*)(const DeformArgsT<T>&, const DeformGrads&, int64_t, int64_t, int64_t, int64_t, float*);

template <typename T>
void bwd_range_base(const DeformArgsT<T>& a, const DeformGrads& g, int64_t b, int64_t m, int64_t q0, int64_t q1,
                    float* gv) {
  MFUSER_DEFORM_SWITCH_D_BWD(a, g, b, m, q0, q1, gv)
}
#if MFUSER_DEFORM_DISPATCH
template <typename T>
__attribute__((target("avx2,fma"))) void bwd_range_avx2(const DeformArgsT<T>& a, const DeformGrads& g, int64_t b,
                                                        int64_t m, int64_t q0, int64_t q1, float* gv) {
  MFUSER_DEFORM_SWITCH_D_BWD(a, g, b, m, q0, q1, gv)
}
template <typename T>
__attribute__((target("avx512f,avx2,fma"))) void bwd_range_avx512(const DeformArgsT<T>& a, const DeformGrads& g,
                                                                  int64_t b, int64_t m, int64_t q0, int64_t q1,
                                                                  float* gv) {
  MFUSER_DEFORM_SWITCH_D_BWD(a, g, b, m, q0, q1, gv)
}
#endif

template <typename T>
void bwd_all(const DeformArgsT<T>& a, const DeformGrads& g, int nthreads) {
  BwdRangeFn<T> bwd_range = bwd_range_base<T>;
#if MFUSER_DEFORM_DISPATCH
  const int level = selective_scan_cpu_level();
  if (level == 2) bwd_range = bwd_range_avx512<T>;
  if (level == 1) bwd_range = bwd_range_avx2<T>;
#endif
  const int64_t M = a.M, D = a.D, S = a.S, SD = a.S * a.D, npair = a.B * a.M;
  if (npair == 0) return;
  auto store = [&](const float* gv, int64_t pair) {  // gv (S, D) of pair (b, m) -> grad_value[b, :, m, :]
    const int64_t b = pair / M, m = pair % M;
    for (int64_t s = 0; s < S; ++s)
      std::memcpy(g.grad_value + ((b * S + s) * M + m) * D, gv + s * D, sizeof(float) * D);
  };
  const int64_t nchunk =
      npair >= nthreads ? 1 : std::max<int64_t>(1, std::min<int64_t>(a.Lq, (nthreads + npair - 1) / npair));
  if (nchunk == 1) {
#pragma omp parallel num_threads(nthreads)
    {
      std::vector<float> gv(static_cast<size_t>(SD));
      // dynamic: on a shared machine a preempted thread does not hold up the others (a pair's result does not
      // depend on the thread that computes it)
#pragma omp for schedule(dynamic, 1)
      for (int64_t pair = 0; pair < npair; ++pair) {
        std::fill(gv.begin(), gv.end(), 0.0f);
        bwd_range(a, g, pair / M, pair % M, 0, a.Lq, gv.data());
        store(gv.data(), pair);
      }
    }
    return;
  }
  // more threads than pairs: nchunk chunks of queries per pair, a buffer each, summed in chunk order
  std::vector<float> bufs(static_cast<size_t>(npair * nchunk * SD), 0.0f);
#pragma omp parallel num_threads(nthreads)
  {
#pragma omp for schedule(dynamic, 1)
    for (int64_t t = 0; t < npair * nchunk; ++t) {
      const int64_t pair = t / nchunk, c = t % nchunk;
      bwd_range(a, g, pair / M, pair % M, a.Lq * c / nchunk, a.Lq * (c + 1) / nchunk, bufs.data() + t * SD);
    }
#pragma omp for schedule(static)
    for (int64_t pair = 0; pair < npair; ++pair) {
      float* sum = bufs.data() + pair * nchunk * SD;
      for (int64_t c = 1; c < nchunk; ++c) {
        const float* part = sum + c * SD;
        for (int64_t k = 0; k < SD; ++k) sum[k] += part[k];
      }
      store(sum, pair);
    }
  }
}

}  // namespace

void ms_deform_attn_fwd_cpu(const DeformArgsT<float>& a, int nthreads) { fwd_all(a, nthreads); }

void ms_deform_attn_fwd_cpu_bf16(const DeformArgsT<bf16>& a, int nthreads) { fwd_all(a, nthreads); }

void ms_deform_attn_bwd_cpu(const DeformArgsT<float>& a, const DeformGrads& g, int nthreads) {
  bwd_all(a, g, nthreads);
}

void ms_deform_attn_bwd_cpu_bf16(const DeformArgsT<bf16>& a, const DeformGrads& g, int nthreads) {
  bwd_all(a, g, nthreads);
}

}  // namespace mfuser
