// Fused CPU selective scan (Mamba-1 recurrence) for mfuser.
//
// Why our own kernel: mamba_ssm only ships CUDA kernels, and a pure-PyTorch scan makes many passes over
// (batch, dim, L, N) tensors. Here one pass per (batch, channel) keeps the N-wide state in registers,
// vectorised over the state with GCC/Clang vector extensions (portable C++17; on x86-64 the hot
// functions are additionally compiled for AVX-512 (16 lanes) and AVX2+FMA (8 lanes) and picked at run
// time), and channels are spread over OpenMP threads (the wrapper passes torch.get_num_threads()).
//
// Per batch b, channel d (group g = d / (dim / G)), state n:
//   dt[l]   = softplus(delta[l] + bias[d])          (bias, softplus optional; softplus threshold 20 as torch)
//   h[l, n] = exp(dt[l] * A[d, n]) * h[l-1, n] + dt[l] * B[g, l, n] * u[l],   h[-1] = 0
//   y[l]    = sum_n C[g, l, n] * h[l, n] + D[d] * u[l]
// The z gate is applied by the Python wrapper with ordinary torch ops.
//
// The backward recomputes dt and the states of one channel into a per-task scratch (2 * L * NP + 2 * L
// floats) instead of storing (batch, dim, L, N) in the forward; dB and dC are accumulated in per-task
// buffers (batch, G, L, NP) and summed by the caller (deterministic for a fixed thread count).
//
// bf16 forward (selective_scan_fwd_cpu_bf16): u, delta, B, C are read as bfloat16 and y is written as bfloat16
// (round to nearest even), while dt, the state h, the decays and every sum stay float32, as in mamba_ssm's CUDA
// kernel: under CPU autocast the fuser's projections produce bf16, and reading them directly saves converting
// four (batch, dim, L)-sized tensors to float32 and the output back. The same templated code serves both types.

#include "selective_scan_cpu.h"

#include <cstring>
#include <vector>

#if defined(__GNUC__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

// On x86-64 the per-channel functions are compiled three times (AVX-512, AVX2+FMA, baseline) and picked at
// run time with __builtin_cpu_supports (which also checks that the OS enables the vector state).
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(MFUSER_NO_X86_DISPATCH)
#define MFUSER_X86_DISPATCH 1
#define MFUSER_TARGET_AVX512 __attribute__((target("avx512f,avx2,fma")))
#define MFUSER_TARGET_AVX2 __attribute__((target("avx2,fma")))
#else
#define MFUSER_X86_DISPATCH 0
#endif

#define MFUSER_INLINE inline __attribute__((always_inline))

namespace mfuser {
namespace {

// W-lane float / int vectors (GCC/Clang vector extensions; lowered to whatever the target has).
template <int W>
struct Vec;
template <>
struct Vec<8> {
  typedef float F __attribute__((vector_size(32)));
  typedef int I __attribute__((vector_size(32)));
  typedef unsigned U __attribute__((vector_size(32)));
  typedef unsigned short H __attribute__((vector_size(16)));  // 8 bf16
};
template <>
struct Vec<16> {
  typedef float F __attribute__((vector_size(64)));
  typedef int I __attribute__((vector_size(64)));
  typedef unsigned U __attribute__((vector_size(64)));
  typedef unsigned short H __attribute__((vector_size(32)));  // 16 bf16
};

template <typename V>
MFUSER_INLINE V vload(const float* p) {
  V v;
  std::memcpy(&v, p, sizeof(V));
  return v;
}

template <typename V>
MFUSER_INLINE void vstore(float* p, const V& v) {
  std::memcpy(p, &v, sizeof(V));
}

template <typename V>
MFUSER_INLINE V vzero() {
  return V{};
}

// W consecutive values of type float or bf16 as a float vector (bf16: the 16 bits become the float's upper half).
template <int W>
MFUSER_INLINE typename Vec<W>::F vload_as_float(const float* p) {
  return vload<typename Vec<W>::F>(p);
}

template <int W>
MFUSER_INLINE typename Vec<W>::F vload_as_float(const bf16* p) {
  typename Vec<W>::H h;
  std::memcpy(&h, p, sizeof(h));
  return (typename Vec<W>::F)(__builtin_convertvector(h, typename Vec<W>::U) << 16);
}

MFUSER_INLINE float to_float(float v) { return v; }

MFUSER_INLINE float to_float(bf16 v) {
  const uint32_t b = static_cast<uint32_t>(v.bits) << 16;
  float f;
  std::memcpy(&f, &b, sizeof(f));
  return f;
}

MFUSER_INLINE void store_from_float(float* p, float v) { *p = v; }

// float -> bf16, round to nearest even (torch's rounding); NaN stays a (quiet) NaN.
MFUSER_INLINE void store_from_float(bf16* p, float v) {
  uint32_t b;
  std::memcpy(&b, &v, sizeof(b));
  if ((b & 0x7fffffffu) > 0x7f800000u) {
    p->bits = static_cast<uint16_t>((b >> 16) | 0x0040u);
    return;
  }
  b += 0x7fffu + ((b >> 16) & 1u);
  p->bits = static_cast<uint16_t>(b >> 16);
}

MFUSER_INLINE float hsum(const Vec<8>::F& v) {
  return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
}

MFUSER_INLINE float hsum(const Vec<16>::F& v) {
  Vec<8>::F lo, hi;
  std::memcpy(&lo, &v, sizeof(lo));
  std::memcpy(&hi, reinterpret_cast<const char*>(&v) + sizeof(lo), sizeof(hi));
  return hsum(lo + hi);
}

// exp for W floats: Cephes-style range reduction + degree-6 polynomial (about 1-2 ulp).
// Inputs are clamped to [-87.34, 89]: exp(x) = 0 for x < -87.34 (flushes denormals), +inf for x > 88.72
// (2^k * p overflows). NaN stays NaN: the comparisons are false for NaN, so NaN lanes keep x, and the
// rounding / polynomial propagate it.
template <int W>
MFUSER_INLINE typename Vec<W>::F vexp(const typename Vec<W>::F& x) {
  typedef typename Vec<W>::F F;
  typedef typename Vec<W>::I I;
  const F lo = vzero<F>() - 87.33654f, hi = vzero<F>() + 89.0f;
  const I below = x < lo;
  F xc = lo > x ? lo : x;
  xc = hi < xc ? hi : xc;
  // k = round(x / ln2) with the 1.5 * 2^23 trick (exact for |k| < 2^22)
  const F kf = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  F r = xc - kf * 0.693359375f;
  r = r - kf * -2.12194440e-4f;
  F p = r * 1.9875691500e-4f + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  // 2^k in two factors so that k = 128 does not overflow the exponent field (the product does, to inf).
  const I k = __builtin_convertvector(kf == kf ? kf : vzero<F>(), I);  // NaN lanes: k = 0 (p is NaN)
  const I k1 = k >> 1;
  const I k2 = k - k1;
  const F s1 = (F)((k1 + 127) << 23);
  const F s2 = (F)((k2 + 127) << 23);
  const F res = p * s1 * s2;
  return (F)((I)res & ~below);
}

// Natural log for W finite floats >= 1 (Cephes logf: mantissa in [sqrt(1/2), sqrt(2)), degree-8 polynomial).
template <int W>
MFUSER_INLINE typename Vec<W>::F vlog_ge1(const typename Vec<W>::F& w) {
  typedef typename Vec<W>::F F;
  typedef typename Vec<W>::I I;
  const I bits = (I)w;
  F e = __builtin_convertvector(((bits >> 23) & 0xff) - 126, F);
  F m = (F)((bits & 0x007fffff) | 0x3f000000);  // in [0.5, 1)
  const I small = m < (vzero<F>() + 0.707106781186547524f);
  e = small ? e - 1.0f : e;
  m = small ? m + m - 1.0f : m - 1.0f;
  const F z = m * m;
  F p = m * 7.0376836292e-2f - 1.1514610310e-1f;
  p = p * m + 1.1676998740e-1f;
  p = p * m - 1.2420140846e-1f;
  p = p * m + 1.4249322787e-1f;
  p = p * m - 1.6668057665e-1f;
  p = p * m + 2.0000714765e-1f;
  p = p * m - 2.4999993993e-1f;
  p = p * m + 3.3333331174e-1f;
  F y = p * m * z;
  y = y + e * -2.12194440e-4f;
  y = y - z * 0.5f;
  return m + y + e * 0.693359375f;
}

// softplus with torch's default threshold: x for x > 20, else log1p(exp(x)) (log1p via Goldberg's trick:
// log(w) * e / (w - 1), w = 1 + e, exact to a few ulp also when e is tiny). NaN stays NaN.
template <int W>
MFUSER_INLINE typename Vec<W>::F vsoftplus(const typename Vec<W>::F& x) {
  typedef typename Vec<W>::F F;
  const F thr = vzero<F>() + 20.0f;
  const F xs = x > thr ? vzero<F>() : x;  // keeps log finite in the unused lanes
  const F e = vexp<W>(xs);
  const F w = e + 1.0f;
  const F d = w - 1.0f;
  const F sp = d == vzero<F>() ? e : vlog_ge1<W>(w) * (e / (d == vzero<F>() ? vzero<F>() + 1.0f : d));
  const F r = x > thr ? x : sp;
  return x == x ? r : x;
}

// sigmoid(x) = 1 / (1 + exp(-x)); NaN stays NaN.
template <int W>
MFUSER_INLINE typename Vec<W>::F vsigmoid(const typename Vec<W>::F& x) {
  return 1.0f / (vexp<W>(-x) + 1.0f);
}

// dt[l] = softplus(delta[l] + bias) or delta[l] + bias (float32); if xout: also stores delta[l] + bias (for the
// backward).
template <int W, typename T>
MFUSER_INLINE void compute_dt(const ScanArgsT<T>& a, int64_t bd, float* dt, float* xout) {
  typedef typename Vec<W>::F F;
  const T* x = a.delta + bd * a.L;
  const float bias = a.bias ? a.bias[bd % a.dim] : 0.0f;
  int64_t l = 0;
  for (; l + W <= a.L; l += W) {
    const F v = vload_as_float<W>(x + l) + bias;
    if (xout) vstore(xout + l, v);
    vstore(dt + l, a.softplus ? vsoftplus<W>(v) : v);
  }
  if (l < a.L) {  // tail through a zero-padded vector
    T tmp[W] = {};
    std::memcpy(static_cast<void*>(tmp), x + l, (a.L - l) * sizeof(T));
    const F v = vload_as_float<W>(tmp) + bias;
    float out[W];
    vstore(out, a.softplus ? vsoftplus<W>(v) : v);
    std::memcpy(dt + l, out, (a.L - l) * sizeof(float));
    if (xout) {
      vstore(out, v);
      std::memcpy(xout + l, out, (a.L - l) * sizeof(float));
    }
  }
}

// ---------------------------------------------------------------- forward, one (batch, channel)
// W lanes, NC = NP / W vectors of state, T: float or bf16 inputs and output. dt: scratch of L floats.
template <int W, int NC, typename T>
MFUSER_INLINE void fwd_channel_impl(const ScanArgsT<T>& a, int64_t bd, T* y, float* last, float* dt) {
  typedef typename Vec<W>::F F;
  const int64_t b = bd / a.dim, d = bd % a.dim;
  const int64_t g = d / (a.dim / a.G);
  const int64_t NP = a.NP;
  const T* u = a.u + bd * a.L;
  const T* Bp = a.B + (b * a.G + g) * a.L * NP;
  const T* Cp = a.C + (b * a.G + g) * a.L * NP;
  const float Dd = a.D ? a.D[d] : 0.0f;
  compute_dt<W>(a, bd, dt, nullptr);
  F Av[NC], h[NC];
  for (int c = 0; c < NC; ++c) {
    Av[c] = vload<F>(a.A + d * NP + W * c);
    h[c] = vzero<F>();
  }
  T* yo = y + bd * a.L;
  for (int64_t l = 0; l < a.L; ++l) {
    const float dtl = dt[l];
    const float ul = to_float(u[l]);
    const float dtu = dtl * ul;
    const T* Bl = Bp + l * NP;
    const T* Cl = Cp + l * NP;
    F acc = vzero<F>();
    for (int c = 0; c < NC; ++c) {
      const F e = vexp<W>(Av[c] * dtl);
      h[c] = e * h[c] + vload_as_float<W>(Bl + W * c) * dtu;
      acc += h[c] * vload_as_float<W>(Cl + W * c);
    }
    store_from_float(yo + l, hsum(acc) + Dd * ul);
  }
  for (int c = 0; c < NC; ++c) vstore(last + bd * NP + W * c, h[c]);
}

// ---------------------------------------------------------------- backward, one (batch, channel)
// scratch: H, E (L * NP each: states and decays exp(dt * A)), dt, x (L each).
// dB, dC: this task's (batch, G, L, NP) accumulators.
template <int W, int NC>
MFUSER_INLINE void bwd_channel_impl(const ScanArgs& a, const ScanGrads& gr, int64_t bd, float* dB, float* dC,
                                    float* scratch) {
  typedef typename Vec<W>::F F;
  const int64_t b = bd / a.dim, d = bd % a.dim;
  const int64_t g = d / (a.dim / a.G);
  const int64_t NP = a.NP, L = a.L;
  float* H = scratch;
  float* E = H + L * NP;
  float* dt = E + L * NP;
  float* xs = dt + L;
  const float* u = a.u + bd * L;
  const int64_t off = (b * a.G + g) * L * NP;
  const float* Bp = a.B + off;
  const float* Cp = a.C + off;
  float* dBp = dB + off;
  float* dCp = dC + off;
  const float* dyc = gr.dy + bd * L;
  const float Dd = a.D ? a.D[d] : 0.0f;
  compute_dt<W>(a, bd, dt, xs);
  F Av[NC], h[NC];
  for (int c = 0; c < NC; ++c) {
    Av[c] = vload<F>(a.A + d * NP + W * c);
    h[c] = vzero<F>();
  }
  // recompute the states and decays
  for (int64_t l = 0; l < L; ++l) {
    const float dtl = dt[l];
    const float dtu = dtl * u[l];
    const float* Bl = Bp + l * NP;
    for (int c = 0; c < NC; ++c) {
      const F e = vexp<W>(Av[c] * dtl);
      h[c] = e * h[c] + vload<F>(Bl + W * c) * dtu;
      vstore(H + l * NP + W * c, h[c]);
      vstore(E + l * NP + W * c, e);
    }
  }
  // reverse sweep; gs = dL/dh[l] (adjoint), carried as exp(dt[l+1] A) * gs[l+1]
  F gs[NC], dAacc[NC];
  for (int c = 0; c < NC; ++c) {
    gs[c] = gr.dlast ? vload<F>(gr.dlast + bd * NP + W * c) : vzero<F>();
    dAacc[c] = vzero<F>();
  }
  float* duc = gr.du + bd * L;
  float* ddc = gr.ddelta + bd * L;
  float dDacc = 0.0f;
  for (int64_t l = L - 1; l >= 0; --l) {
    const float dtl = dt[l], ul = u[l], dyl = dyc[l];
    const float dtu = dtl * ul;
    const float* Bl = Bp + l * NP;
    const float* Cl = Cp + l * NP;
    float* dBl = dBp + l * NP;
    float* dCl = dCp + l * NP;
    F s1 = vzero<F>(), s2 = vzero<F>();
    for (int c = 0; c < NC; ++c) {
      const F hl = vload<F>(H + l * NP + W * c);
      const F hp = l > 0 ? vload<F>(H + (l - 1) * NP + W * c) : vzero<F>();
      const F e = vload<F>(E + l * NP + W * c);
      const F gl = gs[c] + vload<F>(Cl + W * c) * dyl;
      vstore(dCl + W * c, vload<F>(dCl + W * c) + hl * dyl);
      vstore(dBl + W * c, vload<F>(dBl + W * c) + gl * dtu);
      s1 += gl * vload<F>(Bl + W * c);
      const F t = gl * hp * e;  // dL/d(exp(dt A)) * exp(dt A)
      s2 += t * Av[c];
      dAacc[c] += t * dtl;
      gs[c] = gl * e;
    }
    const float sum1 = hsum(s1);
    duc[l] = dtl * sum1 + Dd * dyl;
    ddc[l] = ul * sum1 + hsum(s2);  // dL/ddt for now
    dDacc += dyl * ul;
  }
  for (int c = 0; c < NC; ++c) vstore(gr.dA + bd * NP + W * c, dAacc[c]);
  if (gr.dD) gr.dD[bd] = dDacc;
  // dL/ddelta = dL/ddt * sigmoid(delta + bias) when softplus; dbias = sum over l
  float dbias = 0.0f;
  int64_t l = 0;
  F acc = vzero<F>();
  for (; l + W <= L; l += W) {
    F v = vload<F>(ddc + l);
    if (a.softplus) v = v * vsigmoid<W>(vload<F>(xs + l));
    vstore(ddc + l, v);
    acc += v;
  }
  dbias = hsum(acc);
  for (; l < L; ++l) {
    if (a.softplus) {
      float tmp[W] = {};
      tmp[0] = xs[l];
      float sg[W];
      vstore(sg, vsigmoid<W>(vload<F>(tmp)));
      ddc[l] *= sg[0];
    }
    dbias += ddc[l];
  }
  if (gr.dbias) gr.dbias[bd] = dbias;
}

// 8-lane dispatch over NP = 8 * NC (NC = 1..8).
#define MFUSER_SWITCH8(FN, ...)                  \
  switch (a.NP / 8) {                            \
    case 1: FN<8, 1>(__VA_ARGS__); break;        \
    case 2: FN<8, 2>(__VA_ARGS__); break;        \
    case 3: FN<8, 3>(__VA_ARGS__); break;        \
    case 4: FN<8, 4>(__VA_ARGS__); break;        \
    case 5: FN<8, 5>(__VA_ARGS__); break;        \
    case 6: FN<8, 6>(__VA_ARGS__); break;        \
    case 7: FN<8, 7>(__VA_ARGS__); break;        \
    case 8: FN<8, 8>(__VA_ARGS__); break;        \
    default: break; /* NP is checked */          \
  }
// 16-lane dispatch when NP is a multiple of 16, else 8 lanes.
#define MFUSER_SWITCH16(FN, ...)                 \
  if (a.NP % 16 == 0) {                          \
    switch (a.NP / 16) {                         \
      case 1: FN<16, 1>(__VA_ARGS__); break;     \
      case 2: FN<16, 2>(__VA_ARGS__); break;     \
      case 3: FN<16, 3>(__VA_ARGS__); break;     \
      case 4: FN<16, 4>(__VA_ARGS__); break;     \
      default: break;                            \
    }                                            \
  } else {                                       \
    MFUSER_SWITCH8(FN, __VA_ARGS__)              \
  }

// the forward is a template over the stored type T (float or bf16), deduced from the arguments
#define MFUSER_FWD_PARAMS const ScanArgsT<T> &a, int64_t bd, T *y, float *last, float *dt
#define MFUSER_FWD_ARGS a, bd, y, last, dt
#define MFUSER_BWD_PARAMS const ScanArgs &a, const ScanGrads &gr, int64_t bd, float *dB, float *dC, float *scratch
#define MFUSER_BWD_ARGS a, gr, bd, dB, dC, scratch

template <typename T>
void fwd_channel_base(MFUSER_FWD_PARAMS) { MFUSER_SWITCH8(fwd_channel_impl, MFUSER_FWD_ARGS) }
void bwd_channel_base(MFUSER_BWD_PARAMS) { MFUSER_SWITCH8(bwd_channel_impl, MFUSER_BWD_ARGS) }
#if MFUSER_X86_DISPATCH
template <typename T>
MFUSER_TARGET_AVX2 void fwd_channel_avx2(MFUSER_FWD_PARAMS) { MFUSER_SWITCH8(fwd_channel_impl, MFUSER_FWD_ARGS) }
MFUSER_TARGET_AVX2 void bwd_channel_avx2(MFUSER_BWD_PARAMS) { MFUSER_SWITCH8(bwd_channel_impl, MFUSER_BWD_ARGS) }
template <typename T>
MFUSER_TARGET_AVX512 void fwd_channel_avx512(MFUSER_FWD_PARAMS) { MFUSER_SWITCH16(fwd_channel_impl, MFUSER_FWD_ARGS) }
MFUSER_TARGET_AVX512 void bwd_channel_avx512(MFUSER_BWD_PARAMS) { MFUSER_SWITCH16(bwd_channel_impl, MFUSER_BWD_ARGS) }
#endif

template <typename T>
using FwdFn = void (*)(MFUSER_FWD_PARAMS);
typedef void (*BwdFn)(MFUSER_BWD_PARAMS);

}  // namespace

// 2: AVX-512 path, 1: AVX2+FMA path, 0: baseline (also reported to Python for select_backend).
int selective_scan_cpu_level() {
#if MFUSER_X86_DISPATCH
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return 2;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return 1;
#endif
  return 0;
}

namespace {

#if MFUSER_X86_DISPATCH
int clip_level(int level) {
  const int best = selective_scan_cpu_level();
  return level < 0 || level > best ? best : level;
}
#endif

template <typename T>
FwdFn<T> pick_fwd(int level) {
#if MFUSER_X86_DISPATCH
  level = clip_level(level);
  if (level == 2) return fwd_channel_avx512<T>;
  if (level == 1) return fwd_channel_avx2<T>;
#else
  (void)level;
#endif
  return fwd_channel_base<T>;
}

template <typename T>
void fwd_all(const ScanArgsT<T>& a, T* y, float* last, int nthreads, int level) {
  const int64_t nbd = a.batch * a.dim;
  const FwdFn<T> fwd_channel = pick_fwd<T>(level);
#pragma omp parallel num_threads(nthreads)
  {
    std::vector<float> dt(static_cast<size_t>(a.L));
    // dynamic: on a shared machine a preempted thread does not hold up the others (results do not depend on
    // the schedule: every channel is computed independently)
#pragma omp for schedule(dynamic, 4)
    for (int64_t bd = 0; bd < nbd; ++bd) fwd_channel(a, bd, y, last, dt.data());
  }
}

BwdFn pick_bwd(int level) {
#if MFUSER_X86_DISPATCH
  level = clip_level(level);
  if (level == 2) return bwd_channel_avx512;
  if (level == 1) return bwd_channel_avx2;
#else
  (void)level;
#endif
  return bwd_channel_base;
}

}  // namespace

// Entry points (plain C++, no torch headers: the extension builds with any C++ standard torch accepts and
// does not depend on the libtorch C++ ABI). The Python wrapper (mfuser/layers/selective_scan.py) is the only
// caller: it validates shapes/dtypes/devices/contiguity and allocates every buffer.

void selective_scan_fwd_cpu(const ScanArgs& a, float* y, float* last, int nthreads, int level) {
  fwd_all(a, y, last, nthreads, level);
}

void selective_scan_fwd_cpu_bf16(const ScanArgsBF16& a, bf16* y, float* last, int nthreads, int level) {
  fwd_all(a, y, last, nthreads, level);
}

void selective_scan_bwd_cpu(const ScanArgs& a, const ScanGrads& g, int64_t ntask, int nthreads, int level) {
  const int64_t nbd = a.batch * a.dim;
  const int64_t buf = a.batch * a.G * a.L * a.NP;
  const int64_t per_scratch = 2 * a.L * a.NP + 2 * a.L;
  const BwdFn bwd_channel = pick_bwd(level);
  // tasks are a fixed partition of the channels (chosen by the caller, e.g. 4 per thread) handed out
  // dynamically: load-balanced, and deterministic because task t always sums into accumulator t
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads)
  for (int64_t t = 0; t < ntask; ++t) {
    // task t owns the channels [t * nbd / ntask, (t + 1) * nbd / ntask), accumulator t and scratch t
    const int64_t begin = t * nbd / ntask, end = (t + 1) * nbd / ntask;
    for (int64_t bd = begin; bd < end; ++bd)
      bwd_channel(a, g, bd, g.dB + t * buf, g.dC + t * buf, g.scratch + t * per_scratch);
  }
}

}  // namespace mfuser
