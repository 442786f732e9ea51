// The single Python module definition of the extension ``mfuser._C`` (setup.py compiles every
// mfuser/layers/csrc/**/*.cpp into it; other ops add their entries to the method table below).
//
// Written against the plain CPython API, without torch headers: the functions take raw data pointers
// (tensor.data_ptr()) and sizes, and the Python wrappers in mfuser/layers validate and allocate every
// tensor. This keeps the build independent of the C++ standard and C++ ABI of the installed torch.
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <cstdint>

#include "ms_deform_attn/ms_deform_attn_cpu.h"
#include "selective_scan/selective_scan_cpu.h"

namespace {

// 0 -> nullptr
template <typename T>
T* ptr(unsigned long long p) {
  return reinterpret_cast<T*>(static_cast<uintptr_t>(p));
}

bool sizes_ok(long long batch, long long dim, long long L, long long G, long long NP, int nthreads) {
  if (batch < 0 || dim < 1 || L < 1 || G < 1 || dim % G != 0 || NP % 8 != 0 || NP < 8 || NP > 64 || nthreads < 1) {
    PyErr_SetString(PyExc_ValueError, "selective_scan_cpu: invalid sizes");
    return false;
  }
  return true;
}

// selective_scan_fwd_cpu(u, delta, A, Bt, Ct, D_or_0, bias_or_0, softplus, y, last,
//                        batch, dim, L, G, NP, nthreads, level)
PyObject* py_scan_fwd(PyObject*, PyObject* args) {
  unsigned long long u, delta, A, B, C, D, bias, y, last;
  long long batch, dim, L, G, NP;
  int softplus, nthreads, level;
  if (!PyArg_ParseTuple(args, "KKKKKKKiKKLLLLLii", &u, &delta, &A, &B, &C, &D, &bias, &softplus, &y, &last, &batch,
                        &dim, &L, &G, &NP, &nthreads, &level))
    return nullptr;
  if (!sizes_ok(batch, dim, L, G, NP, nthreads)) return nullptr;
  const mfuser::ScanArgs a{ptr<const float>(u), ptr<const float>(delta), ptr<const float>(A), ptr<const float>(B),
                           ptr<const float>(C), ptr<const float>(D), ptr<const float>(bias), softplus,
                           batch, dim, L, G, NP};
  Py_BEGIN_ALLOW_THREADS mfuser::selective_scan_fwd_cpu(a, ptr<float>(y), ptr<float>(last), nthreads, level);
  Py_END_ALLOW_THREADS Py_RETURN_NONE;
}

// selective_scan_fwd_cpu_bf16: the same arguments; u, delta, Bt, Ct and y are bfloat16, A, D, bias and last float32
PyObject* py_scan_fwd_bf16(PyObject*, PyObject* args) {
  unsigned long long u, delta, A, B, C, D, bias, y, last;
  long long batch, dim, L, G, NP;
  int softplus, nthreads, level;
  if (!PyArg_ParseTuple(args, "KKKKKKKiKKLLLLLii", &u, &delta, &A, &B, &C, &D, &bias, &softplus, &y, &last, &batch,
                        &dim, &L, &G, &NP, &nthreads, &level))
    return nullptr;
  if (!sizes_ok(batch, dim, L, G, NP, nthreads)) return nullptr;
  const mfuser::ScanArgsBF16 a{ptr<const mfuser::bf16>(u), ptr<const mfuser::bf16>(delta), ptr<const float>(A),
                               ptr<const mfuser::bf16>(B), ptr<const mfuser::bf16>(C), ptr<const float>(D),
                               ptr<const float>(bias), softplus, batch, dim, L, G, NP};
  Py_BEGIN_ALLOW_THREADS mfuser::selective_scan_fwd_cpu_bf16(a, ptr<mfuser::bf16>(y), ptr<float>(last), nthreads,
                                                             level);
  Py_END_ALLOW_THREADS Py_RETURN_NONE;
}

// selective_scan_bwd_cpu(u, delta, A, Bt, Ct, D_or_0, bias_or_0, softplus, dy, dlast_or_0, du, ddelta, dA, dB, dC,
//                        dD_or_0, dbias_or_0, scratch, batch, dim, L, G, NP, ntask, nthreads, level)
PyObject* py_scan_bwd(PyObject*, PyObject* args) {
  unsigned long long u, delta, A, B, C, D, bias, dy, dlast, du, ddelta, dA, dB, dC, dD, dbias, scratch;
  long long batch, dim, L, G, NP, ntask;
  int softplus, nthreads, level;
  if (!PyArg_ParseTuple(args, "KKKKKKKiKKKKKKKKKKLLLLLLii", &u, &delta, &A, &B, &C, &D, &bias, &softplus, &dy,
                        &dlast, &du, &ddelta, &dA, &dB, &dC, &dD, &dbias, &scratch, &batch, &dim, &L, &G, &NP,
                        &ntask, &nthreads, &level))
    return nullptr;
  if (!sizes_ok(batch, dim, L, G, NP, nthreads)) return nullptr;
  if (ntask < 1) {
    PyErr_SetString(PyExc_ValueError, "selective_scan_bwd_cpu: ntask must be >= 1");
    return nullptr;
  }
  const mfuser::ScanArgs a{ptr<const float>(u), ptr<const float>(delta), ptr<const float>(A), ptr<const float>(B),
                           ptr<const float>(C), ptr<const float>(D), ptr<const float>(bias), softplus,
                           batch, dim, L, G, NP};
  const mfuser::ScanGrads g{ptr<const float>(dy), ptr<const float>(dlast), ptr<float>(du), ptr<float>(ddelta),
                            ptr<float>(dA), ptr<float>(dB), ptr<float>(dC), ptr<float>(dD), ptr<float>(dbias),
                            ptr<float>(scratch)};
  Py_BEGIN_ALLOW_THREADS mfuser::selective_scan_bwd_cpu(a, g, ntask, nthreads, level);
  Py_END_ALLOW_THREADS Py_RETURN_NONE;
}

// ms_deform_attn_fwd_cpu(value, shapes, starts, loc, attn, out, B, S, M, D, Lq, L, P, value_is_bf16, nthreads)
PyObject* py_deform_fwd(PyObject*, PyObject* args) {
  unsigned long long value, shapes, starts, loc, attn, out;
  long long B, S, M, D, Lq, L, P;
  int is_bf16, nthreads;
  if (!PyArg_ParseTuple(args, "KKKKKKLLLLLLLii", &value, &shapes, &starts, &loc, &attn, &out, &B, &S, &M, &D, &Lq,
                        &L, &P, &is_bf16, &nthreads))
    return nullptr;
  if (B < 0 || S < 1 || M < 1 || D < 1 || Lq < 0 || L < 1 || P < 1 || nthreads < 1) {
    PyErr_SetString(PyExc_ValueError, "ms_deform_attn_fwd_cpu: invalid sizes");
    return nullptr;
  }
  if (is_bf16) {
    const mfuser::DeformArgsT<mfuser::bf16> a{ptr<const mfuser::bf16>(value), ptr<const int64_t>(shapes),
                                              ptr<const int64_t>(starts), ptr<const float>(loc),
                                              ptr<const float>(attn), ptr<float>(out), B, S, M, D, Lq, L, P};
    Py_BEGIN_ALLOW_THREADS mfuser::ms_deform_attn_fwd_cpu_bf16(a, nthreads);
    Py_END_ALLOW_THREADS
  } else {
    const mfuser::DeformArgsT<float> a{ptr<const float>(value), ptr<const int64_t>(shapes), ptr<const int64_t>(starts),
                                       ptr<const float>(loc), ptr<const float>(attn), ptr<float>(out),
                                       B, S, M, D, Lq, L, P};
    Py_BEGIN_ALLOW_THREADS mfuser::ms_deform_attn_fwd_cpu(a, nthreads);
    Py_END_ALLOW_THREADS
  }
  Py_RETURN_NONE;
}

// ms_deform_attn_bwd_cpu(value, shapes, starts, loc, attn, grad_out, grad_value, grad_loc, grad_attn,
//                        B, S, M, D, Lq, L, P, value_is_bf16, nthreads); grad_* float32, every element written
PyObject* py_deform_bwd(PyObject*, PyObject* args) {
  unsigned long long value, shapes, starts, loc, attn, gout, gvalue, gloc, gattn;
  long long B, S, M, D, Lq, L, P;
  int is_bf16, nthreads;
  if (!PyArg_ParseTuple(args, "KKKKKKKKKLLLLLLLii", &value, &shapes, &starts, &loc, &attn, &gout, &gvalue, &gloc,
                        &gattn, &B, &S, &M, &D, &Lq, &L, &P, &is_bf16, &nthreads))
    return nullptr;
  if (B < 0 || S < 1 || M < 1 || D < 1 || Lq < 0 || L < 1 || P < 1 || nthreads < 1) {
    PyErr_SetString(PyExc_ValueError, "ms_deform_attn_bwd_cpu: invalid sizes");
    return nullptr;
  }
  const mfuser::DeformGrads g{ptr<const float>(gout), ptr<float>(gvalue), ptr<float>(gloc), ptr<float>(gattn)};
  if (is_bf16) {
    const mfuser::DeformArgsT<mfuser::bf16> a{ptr<const mfuser::bf16>(value), ptr<const int64_t>(shapes),
                                              ptr<const int64_t>(starts), ptr<const float>(loc),
                                              ptr<const float>(attn), nullptr, B, S, M, D, Lq, L, P};
    Py_BEGIN_ALLOW_THREADS mfuser::ms_deform_attn_bwd_cpu_bf16(a, g, nthreads);
    Py_END_ALLOW_THREADS
  } else {
    const mfuser::DeformArgsT<float> a{ptr<const float>(value), ptr<const int64_t>(shapes), ptr<const int64_t>(starts),
                                       ptr<const float>(loc), ptr<const float>(attn), nullptr, B, S, M, D, Lq, L, P};
    Py_BEGIN_ALLOW_THREADS mfuser::ms_deform_attn_bwd_cpu(a, g, nthreads);
    Py_END_ALLOW_THREADS
  }
  Py_RETURN_NONE;
}

PyObject* py_scan_level(PyObject*, PyObject*) { return PyLong_FromLong(mfuser::selective_scan_cpu_level()); }

PyMethodDef methods[] = {
    {"selective_scan_cpu_level", py_scan_level, METH_NOARGS,
     "Vector code path the CPU selective scan uses here: 2 AVX-512, 1 AVX2+FMA, 0 portable."},
    {"selective_scan_fwd_cpu", py_scan_fwd, METH_VARARGS,
     "Fused selective scan forward on CPU (raw pointers; use mfuser.layers.selective_scan)."},
    {"selective_scan_fwd_cpu_bf16", py_scan_fwd_bf16, METH_VARARGS,
     "Fused selective scan forward on CPU, bfloat16 inputs and output, float32 state (raw pointers)."},
    {"selective_scan_bwd_cpu", py_scan_bwd, METH_VARARGS,
     "Fused selective scan backward on CPU (raw pointers; use mfuser.layers.selective_scan)."},
    {"ms_deform_attn_fwd_cpu", py_deform_fwd, METH_VARARGS,
     "Fused multi-scale deformable attention sampling on CPU, forward (raw pointers; use mfuser.layers)."},
    {"ms_deform_attn_bwd_cpu", py_deform_bwd, METH_VARARGS,
     "Fused multi-scale deformable attention sampling on CPU, backward (raw pointers; use mfuser.layers)."},
    {nullptr, nullptr, 0, nullptr}};

PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", "mfuser compiled CPU kernels", -1, methods,
                          nullptr, nullptr, nullptr, nullptr};

}  // namespace

PyMODINIT_FUNC PyInit__C(void) { return PyModule_Create(&module_def); }
