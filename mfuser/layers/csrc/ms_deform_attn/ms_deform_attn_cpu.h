// Fused multi-scale deformable attention sampling on CPU (forward and backward): declarations shared with the
// module definition (mfuser/layers/csrc/module.cpp). Plain C++17, no torch headers.
#pragma once
#include <cstdint>

#include "../selective_scan/selective_scan_cpu.h"  // bf16

namespace mfuser {

// out[b, q, m, :] = sum over levels l and points p of attn[b, q, m, l, p] * bilinear(value level l of head m,
//                   at loc[b, q, m, l, p]), zero outside the map (grid_sample, align_corners=False, zeros padding).
// T: the value's type (float or bf16); locations, weights and the output are float32; every sum is float32.
template <typename T>
struct DeformArgsT {
  const T* value;          // (B, S, M, D), S = sum_l H_l * W_l, levels one after another, row-major
  const int64_t* shapes;   // (L, 2): H_l, W_l
  const int64_t* starts;   // (L,): first token of level l
  const float* loc;        // (B, Lq, M, L, P, 2): (x, y) in [0, 1] (pixel j's centre at (j + 0.5) / W)
  const float* attn;       // (B, Lq, M, L, P)
  float* out;              // (B, Lq, M, D); unused (nullptr) by the backward
  int64_t B, S, M, D, Lq, L, P;
};

// Backward buffers, all float32 and C-contiguous; every element of the three outputs is written (no zero-filling
// needed by the caller). A point the forward skips (its neighbourhood wholly outside the map, or NaN) gets a zero
// location gradient.
struct DeformGrads {
  const float* grad_out;   // (B, Lq, M, D)
  float* grad_value;       // (B, S, M, D) out (float32 also for a bf16 value; the caller casts)
  float* grad_loc;         // (B, Lq, M, L, P, 2) out
  float* grad_attn;        // (B, Lq, M, L, P) out
};

void ms_deform_attn_fwd_cpu(const DeformArgsT<float>& a, int nthreads);
void ms_deform_attn_fwd_cpu_bf16(const DeformArgsT<bf16>& a, int nthreads);
void ms_deform_attn_bwd_cpu(const DeformArgsT<float>& a, const DeformGrads& g, int nthreads);
void ms_deform_attn_bwd_cpu_bf16(const DeformArgsT<bf16>& a, const DeformGrads& g, int nthreads);

}  // namespace mfuser
