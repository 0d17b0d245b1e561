// AVX2 + FMA fp32 micro-kernel (compiled with -mavx2 -mfma; called only when the CPU has them).
// Tile 6 x 16: 12 ymm accumulators, 2 for the audio frames, 1 for the broadcast pixel value.
#include <immintrin.h>

#include "ukernels.h"

namespace vpkl::cpu {
namespace {

constexpr int MR = 6, NR = 16;

void fp32_kernel(int64_t kcu, const uint32_t *xp, const uint32_t *bp, void *cv, int64_t ldc, int first) {
  const float *x = reinterpret_cast<const float *>(xp);
  const float *b = reinterpret_cast<const float *>(bp);
  float *c = static_cast<float *>(cv);
  __m256 acc[MR][2];
#pragma GCC unroll 6
  for (int i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
  for (int64_t k = 0; k < kcu; ++k) {
    const __m256 b0 = _mm256_loadu_ps(b + k * NR), b1 = _mm256_loadu_ps(b + k * NR + 8);
#pragma GCC unroll 6
    for (int i = 0; i < MR; ++i) {
      const __m256 a = _mm256_broadcast_ss(x + k * MR + i);
      acc[i][0] = _mm256_fmadd_ps(a, b0, acc[i][0]);
      acc[i][1] = _mm256_fmadd_ps(a, b1, acc[i][1]);
    }
  }
#pragma GCC unroll 6
  for (int i = 0; i < MR; ++i) {
    float *ci = c + i * ldc;
    if (!first) {
      acc[i][0] = _mm256_add_ps(acc[i][0], _mm256_loadu_ps(ci));
      acc[i][1] = _mm256_add_ps(acc[i][1], _mm256_loadu_ps(ci + 8));
    }
    _mm256_storeu_ps(ci, acc[i][0]);
    _mm256_storeu_ps(ci + 8, acc[i][1]);
  }
}

}  // namespace

UKernel avx2_fp32() { return {"avx2", Packing::fp32, MR, NR, fp32_kernel}; }

}  // namespace vpkl::cpu
