// AVX-512 micro-kernels (this file is compiled with -mavx512f -mavx512bw -mavx512vl
// -mavx512bf16 -mavx512vnni and only called when the CPU reports those features).
// Tile 14 x 32: 28 zmm accumulators, 2 for the audio frames, 1 for the broadcast pixel word.
#include <immintrin.h>

#include "ukernels.h"

namespace vpkl::cpu {
namespace {

constexpr int MR = 14, NR = 32;

inline __m512 add(__m512 a, const float *c) { return _mm512_add_ps(a, _mm512_loadu_ps(c)); }
inline __m512i add(__m512i a, const int32_t *c) { return _mm512_add_epi32(a, _mm512_loadu_si512(c)); }
inline void store(float *c, __m512 a) { _mm512_storeu_ps(c, a); }
inline void store(int32_t *c, __m512i a) { _mm512_storeu_si512(c, a); }

// The tile loop shared by the three precisions: step(acc, broadcast pixel word, 16 frame words).
template <class V, class T, class Step>
inline void tile(int64_t kcu, const uint32_t *xp, const uint32_t *bp, void *cv, int64_t ldc, int first, Step step) {
  T *c = static_cast<T *>(cv);
  V acc[MR][2];
#pragma GCC unroll 14
  for (int i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = V{};
  for (int64_t k = 0; k < kcu; ++k) {
    const __m512i b0 = _mm512_loadu_si512(bp + k * NR), b1 = _mm512_loadu_si512(bp + k * NR + 16);
#pragma GCC unroll 14
    for (int i = 0; i < MR; ++i) {
      const __m512i a = _mm512_set1_epi32(static_cast<int>(xp[k * MR + i]));
      acc[i][0] = step(acc[i][0], a, b0);
      acc[i][1] = step(acc[i][1], a, b1);
    }
  }
#pragma GCC unroll 14
  for (int i = 0; i < MR; ++i) {
    T *ci = c + i * ldc;
    if (!first) acc[i][0] = add(acc[i][0], ci), acc[i][1] = add(acc[i][1], ci + 16);
    store(ci, acc[i][0]);
    store(ci + 16, acc[i][1]);
  }
}

void fp32_kernel(int64_t kcu, const uint32_t *xp, const uint32_t *bp, void *c, int64_t ldc, int first) {
  tile<__m512, float>(kcu, xp, bp, c, ldc, first, [](__m512 acc, __m512i a, __m512i b) {
    return _mm512_fmadd_ps(_mm512_castsi512_ps(a), _mm512_castsi512_ps(b), acc);
  });
}

// vdpbf16ps: each fp32 lane j += a.bf16[2j] b.bf16[2j] + a.bf16[2j+1] b.bf16[2j+1].
void bf16_kernel(int64_t kcu, const uint32_t *xp, const uint32_t *bp, void *c, int64_t ldc, int first) {
  tile<__m512, float>(kcu, xp, bp, c, ldc, first, [](__m512 acc, __m512i a, __m512i b) {
    return _mm512_dpbf16_ps(acc, (__m512bh)a, (__m512bh)b);
  });
}

// vpdpbusd: each int32 lane j += sum_{t<4} a.u8[4j+t] b.s8[4j+t] (pixels unsigned, frames signed).
void int8_kernel(int64_t kcu, const uint32_t *xp, const uint32_t *bp, void *c, int64_t ldc, int first) {
  tile<__m512i, int32_t>(kcu, xp, bp, c, ldc, first,
                         [](__m512i acc, __m512i a, __m512i b) { return _mm512_dpbusd_epi32(acc, a, b); });
}

// g queries x 64 values of D in 16 zmm accumulators; each row of x is loaded once for all g.
template <int G>
void wsum_g(int64_t n, const float *w, int64_t ldw, const float *x, int64_t ldx, int64_t D, float *out, int64_t ldo) {
  for (int64_t d0 = 0; d0 < D; d0 += 64) {
    __mmask16 mask[4];
    for (int j = 0; j < 4; ++j) {
      const int64_t left = D - d0 - 16 * j;
      mask[j] = left >= 16 ? __mmask16(0xffff) : left <= 0 ? __mmask16(0) : __mmask16((1u << left) - 1);
    }
    __m512 acc[G][4];
#pragma GCC unroll 4
    for (int q = 0; q < G; ++q)
      for (int j = 0; j < 4; ++j) acc[q][j] = _mm512_setzero_ps();
    for (int64_t i = 0; i < n; ++i) {
      const float *xi = x + i * ldx + d0;
      __m512 v[4];
      for (int j = 0; j < 4; ++j) v[j] = _mm512_maskz_loadu_ps(mask[j], xi + 16 * j);
#pragma GCC unroll 4
      for (int q = 0; q < G; ++q) {
        const __m512 b = _mm512_set1_ps(w[q * ldw + i]);
        for (int j = 0; j < 4; ++j) acc[q][j] = _mm512_fmadd_ps(b, v[j], acc[q][j]);
      }
    }
    for (int q = 0; q < G; ++q)
      for (int j = 0; j < 4; ++j) _mm512_mask_storeu_ps(out + q * ldo + d0 + 16 * j, mask[j], acc[q][j]);
  }
}

}  // namespace

void avx512_wsum(int64_t n, int g, const float *w, int64_t ldw, const float *x, int64_t ldx, int64_t D, float *out,
                 int64_t ldo) {
  switch (g) {
    case 1: return wsum_g<1>(n, w, ldw, x, ldx, D, out, ldo);
    case 2: return wsum_g<2>(n, w, ldw, x, ldx, D, out, ldo);
    case 3: return wsum_g<3>(n, w, ldw, x, ldx, D, out, ldo);
    default: return wsum_g<4>(n, w, ldw, x, ldx, D, out, ldo);
  }
}

UKernel avx512_fp32() { return {"avx512", Packing::fp32, MR, NR, fp32_kernel}; }
UKernel avx512_bf16() { return {"avx512-bf16", Packing::bf16, MR, NR, bf16_kernel}; }
UKernel avx512_int8() { return {"avx512-vnni", Packing::int8, MR, NR, int8_kernel}; }

}  // namespace vpkl::cpu
