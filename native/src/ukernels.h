// Micro-kernels of the CPU head: one MR x NR tile of the matchmap, C += Xp^T Bp over kcu k-units.
//
// A k-unit is one 32-bit word: one fp32 value, two bf16 values (k, k+1) or four 8-bit values
// (k .. k+3). Xp holds MR query-pixel rows as [kcu][MR] words, Bp holds NR audio frames as
// [kcu][NR] words; C is MR rows of NR accumulators (float, or int32 for int8) with row stride
// ldc. first != 0: C is overwritten instead of accumulated.
#pragma once
#include <cstdint>

namespace vpkl::cpu {

enum class Packing { fp32, bf16, int8 };

using UKernelFn = void (*)(int64_t kcu, const uint32_t *xp, const uint32_t *bp, void *c, int64_t ldc, int first);

struct UKernel {
  const char *name;  // "avx512", "avx512-bf16", "avx512-vnni", "avx2", "portable", ...
  Packing packing;
  int mr, nr;
  UKernelFn fn;
};

// Weighted sums of rows, for the attention contexts: out[q][d] = sum_i w[q][i] x[i][d] for
// q < g <= 4 (i < n, d < D; row strides ldw, ldx, ldo; out is overwritten).
using WsumFn = void (*)(int64_t n, int g, const float *w, int64_t ldw, const float *x, int64_t ldx, int64_t D,
                        float *out, int64_t ldo);

#ifdef VPKL_X86_KERNELS  // set by CMake when the x86 kernel files are compiled
UKernel avx512_fp32();
UKernel avx512_bf16();
UKernel avx512_int8();
UKernel avx2_fp32();
void avx512_wsum(int64_t n, int g, const float *w, int64_t ldw, const float *x, int64_t ldx, int64_t D, float *out,
                 int64_t ldo);
#endif

}  // namespace vpkl::cpu
