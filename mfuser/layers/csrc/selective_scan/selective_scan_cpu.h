// Fused CPU selective scan: declarations shared with the module definition (mfuser/layers/csrc/module.cpp).
// Plain C++17, no torch headers.
#pragma once
#include <cstdint>

namespace mfuser {

// bfloat16 as stored in memory (the upper 16 bits of a float32; torch.bfloat16's layout).
struct bf16 {
  uint16_t bits;
};

// Inputs, all C-contiguous. T: the type of the streamed inputs u, delta, B, C (float, or bf16 in the bf16 forward);
// the parameters A, D, bias are float32. NP: state size padded to a multiple of 8 (8..64) with zeros.
template <typename T>
struct ScanArgsT {
  const T* u;          // (batch, dim, L)
  const T* delta;      // (batch, dim, L), before bias and softplus
  const float* A;      // (dim, NP)
  const T* B;          // (batch, G, L, NP)  (state last)
  const T* C;          // (batch, G, L, NP)
  const float* D;      // (dim,) or nullptr
  const float* bias;   // (dim,) delta bias, or nullptr
  int softplus;        // dt = softplus(delta + bias) if nonzero, else delta + bias
  int64_t batch, dim, L, G, NP;
};
typedef ScanArgsT<float> ScanArgs;
typedef ScanArgsT<bf16> ScanArgsBF16;

// Backward buffers. ntask = number of work units (each owns one dB/dC accumulator and one scratch).
struct ScanGrads {
  const float* dy;     // (batch, dim, L)
  const float* dlast;  // (batch, dim, NP) or nullptr
  float* du;           // (batch, dim, L) out
  float* ddelta;       // (batch, dim, L) out
  float* dA;           // (batch, dim, NP) out, summed over batch by the caller
  float* dB;           // (ntask, batch, G, L, NP) zero-initialised, summed over ntask by the caller
  float* dC;           // (ntask, batch, G, L, NP) zero-initialised
  float* dD;           // (batch, dim) out, or nullptr
  float* dbias;        // (batch, dim) out, or nullptr
  float* scratch;      // (ntask, 2 * L * NP + 2 * L)
};

// 2: AVX-512 code path, 1: AVX2+FMA, 0: portable baseline.
int selective_scan_cpu_level();
// level: code path to use (-1 = best available; larger than supported is clipped).
// y: (batch, dim, L) out, including D * u; last: (batch, dim, NP) out.
void selective_scan_fwd_cpu(const ScanArgs& a, float* y, float* last, int nthreads, int level);
// bf16 inputs u, delta, B, C and output y (rounded to nearest even); dt, the state and every sum in float32
// (as mamba_ssm's CUDA kernel does); last: float32.
void selective_scan_fwd_cpu_bf16(const ScanArgsBF16& a, bf16* y, float* last, int nthreads, int level);
// The backward is float32 only (the Python wrapper converts bf16 inputs).
void selective_scan_bwd_cpu(const ScanArgs& a, const ScanGrads& g, int64_t ntask, int nthreads, int level);

}  // namespace mfuser
