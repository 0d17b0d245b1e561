// CPU fused localising-attention head (Nortje & Kamper, SLT 2022, Sec. 3.2): see vpkl/head.h
// for the equations.
//
// The matchmap of all queries against the utterance is one product X A^T with X the Q*M query
// pixel rows (Q x M x D) and A the n_valid frames (N x D). It is never stored whole:
//
//  1. A is packed once per call into NR-frame panels of k-units ([panel][D/KU][NR] words;
//     bf16 pairs or int8 quads with a scale per frame for the reduced precisions).
//  2. Queries are processed in groups of about 196 pixel rows (4 queries at M = 49), split
//     across threads. For each block of NB frames and KCU k-units, the group's rows are packed
//     (MR-row micro-panels) and the micro-kernel (ukernels.h) accumulates MR x NR tiles of the
//     group's matchmap block (rows x NB, about 400 KB: it stays in L2) while the NR-frame
//     panel of A (KCU x NR words, 32 KB) stays in L1.
//  3. Each finished block is reduced at once: aud_raw[q, n] = max over the query's M rows
//     (complete per frame), im_raw[q, m] = running max over the frames seen so far.
//  4. Per query: min-max normalisation, the attention-weighted contexts from the original
//     fp32 embeddings (also at reduced precision) and S = (1 + cos) / 2.
//
// Reduced precisions change only step 1-3 (the matchmap): bf16 rounds inputs to nearest even
// and accumulates in fp32 (vdpbf16ps); int8 quantises each pixel row and each frame
// symmetrically (scale = max |x| / 127), stores pixels offset by +128 as unsigned bytes and
// corrects with 128 * (sum of the frame's int8 values) after the int32 accumulation (vpdpbusd).
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <mutex>
#include <new>
#include <thread>
#include <vector>

#include "ukernels.h"
#include "vpkl/head.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(_WIN32)
#define VPKL_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define VPKL_CLONES
#endif

namespace vpkl::cpu {
namespace {

constexpr int64_t KCU = 256;         // k-units per packed block
constexpr int64_t NB = 512;          // frames per matchmap block (a multiple of every NR)
constexpr int64_t ROWS_TARGET = 196; // pixel rows per query group
constexpr int64_t MACS_PER_THREAD = int64_t(8) << 20;
constexpr int64_t INT8_MAX_D = 65536;  // |sum of D products of 255 x 127| and 128 |frame sum| stay below 2^31

// ---- portable micro-kernels (any CPU; the compiler vectorises the inner loop) ----
constexpr int PMR = 8, PNR = 16;

inline float bf16_lo(uint32_t w) { uint32_t b = w << 16; float f; std::memcpy(&f, &b, 4); return f; }
inline float bf16_hi(uint32_t w) { uint32_t b = w & 0xffff0000u; float f; std::memcpy(&f, &b, 4); return f; }

template <Packing P>
void portable_kernel(int64_t kcu, const uint32_t *xp, const uint32_t *bp, void *cv, int64_t ldc, int first) {
  using Acc = std::conditional_t<P == Packing::int8, int32_t, float>;
  Acc acc[PMR][PNR] = {};
  for (int64_t k = 0; k < kcu; ++k) {
    const uint32_t *b = bp + k * PNR;
    for (int i = 0; i < PMR; ++i) {
      const uint32_t a = xp[k * PMR + i];
      for (int j = 0; j < PNR; ++j) {
        if constexpr (P == Packing::fp32) {
          float af, bf;
          std::memcpy(&af, &a, 4);
          std::memcpy(&bf, b + j, 4);
          acc[i][j] += af * bf;
        } else if constexpr (P == Packing::bf16) {
          acc[i][j] += bf16_lo(a) * bf16_lo(b[j]) + bf16_hi(a) * bf16_hi(b[j]);
        } else {
          int32_t s = 0;
          for (int t = 0; t < 4; ++t)
            s += int32_t((a >> (8 * t)) & 0xff) * int32_t(int8_t((b[j] >> (8 * t)) & 0xff));
          acc[i][j] += s;
        }
      }
    }
  }
  Acc *c = static_cast<Acc *>(cv);
  for (int i = 0; i < PMR; ++i)
    for (int j = 0; j < PNR; ++j) c[i * ldc + j] = first ? acc[i][j] : c[i * ldc + j] + acc[i][j];
}

UKernel portable(Packing p) {
  switch (p) {
    case Packing::fp32: return {"portable", p, PMR, PNR, portable_kernel<Packing::fp32>};
    case Packing::bf16: return {"portable-bf16", p, PMR, PNR, portable_kernel<Packing::bf16>};
    default: return {"portable-int8", p, PMR, PNR, portable_kernel<Packing::int8>};
  }
}

void portable_wsum(int64_t n, int g, const float *w, int64_t ldw, const float *x, int64_t ldx, int64_t D, float *out,
                   int64_t ldo);

Packing packing_of(vpkl_precision p) {
  return p == VPKL_BF16 ? Packing::bf16 : p == VPKL_INT8 ? Packing::int8 : Packing::fp32;
}

// The micro-kernel for a precision on this CPU. VPKL_CPU_ISA=avx512|avx2|portable caps the
// instruction set (for tests and benchmarks of the fallbacks).
UKernel select(vpkl_precision precision) {
  const Packing p = packing_of(precision);
  const char *cap = std::getenv("VPKL_CPU_ISA");
  const bool allow512 = !cap || !*cap || !std::strcmp(cap, "avx512");
  const bool allow2 = allow512 || !std::strcmp(cap, "avx2");
#ifdef VPKL_X86_KERNELS
  __builtin_cpu_init();
  const bool f512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                    __builtin_cpu_supports("avx512vl");
  if (allow512 && f512) {
    if (p == Packing::fp32) return avx512_fp32();
    if (p == Packing::bf16 && __builtin_cpu_supports("avx512bf16")) return avx512_bf16();
    if (p == Packing::int8 && __builtin_cpu_supports("avx512vnni")) return avx512_int8();
  }
  if (allow2 && p == Packing::fp32 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    return avx2_fp32();
#else
  (void)allow2;
#endif
  return portable(p);
}

WsumFn select_wsum() {
  const char *cap = std::getenv("VPKL_CPU_ISA");
#ifdef VPKL_X86_KERNELS
  if ((!cap || !*cap || !std::strcmp(cap, "avx512")) && __builtin_cpu_supports("avx512f")) return avx512_wsum;
#else
  (void)cap;
#endif
  return portable_wsum;
}

inline int ku_of(Packing p) { return p == Packing::fp32 ? 1 : p == Packing::bf16 ? 2 : 4; }

// ---- row conversion (vectorised; cloned for AVX-512 / AVX2 / baseline) ----
VPKL_CLONES bool finite_row(const float *x, int64_t n) {
  uint32_t bad = 0;
  for (int64_t i = 0; i < n; ++i) {
    uint32_t b;
    std::memcpy(&b, x + i, 4);
    bad |= uint32_t((b & 0x7f800000u) == 0x7f800000u);
  }
  return !bad;
}

VPKL_CLONES float max_abs_row(const float *x, int64_t n) {  // finite inputs: |x| orders as its bits
  uint32_t m = 0;
  for (int64_t i = 0; i < n; ++i) {
    uint32_t b;
    std::memcpy(&b, x + i, 4);
    m = std::max(m, b & 0x7fffffffu);
  }
  float f;
  std::memcpy(&f, &m, 4);
  return f;
}

VPKL_CLONES float dot_row(const float *x, const float *y, int64_t n) {  // 16 partial sums: vectorises
  float acc[16] = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int j = 0; j < 16; ++j) acc[j] += x[i + j] * y[i + j];
  float s = 0.f;
  for (; i < n; ++i) s += x[i] * y[i];
  for (int j = 0; j < 16; ++j) s += acc[j];
  return s;
}

VPKL_CLONES void bf16_row(const float *x, int64_t n, uint16_t *out) {  // round to nearest even
  for (int64_t i = 0; i < n; ++i) {
    uint32_t b;
    std::memcpy(&b, x + i, 4);
    out[i] = uint16_t((b + 0x7fffu + ((b >> 16) & 1u)) >> 16);
  }
}

// q = round-to-nearest-even(clamp(x * inv, -127, 127)) + offset, as bytes
VPKL_CLONES void int8_row(const float *x, int64_t n, float inv, int32_t offset, uint8_t *out) {
  for (int64_t i = 0; i < n; ++i) {
    const float y = std::min(std::max(x[i] * inv, -127.f), 127.f) + 12582912.f;  // 1.5 * 2^23: rounds y
    int32_t b;
    std::memcpy(&b, &y, 4);
    out[i] = uint8_t(b - 0x4B400000 + offset);
  }
}

struct RowStats {
  float scale = 1.f;   // int8: max |x| / 127
  float norm2 = 0.f;   // sum of squares (reduced precisions)
  float max_abs = 0.f; // max |x| (reduced precisions)
};

// One row of D floats (element stride s) -> ku k-unit words in buf, zero-padded (int8 pixels:
// +128, i.e. zero too), and the row's statistics. false: the row has NaN or Inf.
template <Packing P, bool Pixel>
bool row_words(const float *row, int64_t s, int64_t D, int64_t ku, std::vector<float> &tmp, uint32_t *buf,
               RowStats *st) {
  const float *x = row;
  if (s != 1) {
    tmp.resize(size_t(D));
    for (int64_t d = 0; d < D; ++d) tmp[d] = row[d * s];
    x = tmp.data();
  }
  if (!finite_row(x, D)) return false;
  if constexpr (P != Packing::fp32) st->norm2 = dot_row(x, x, D), st->max_abs = max_abs_row(x, D);
  if constexpr (P == Packing::fp32) {
    std::memcpy(buf, x, size_t(D) * 4);
  } else if constexpr (P == Packing::bf16) {
    buf[ku - 1] = 0u;
    bf16_row(x, D, reinterpret_cast<uint16_t *>(buf));
  } else {
    const float m = st->max_abs;
    st->scale = m > 0.f ? m / 127.f : 1.f;
    buf[ku - 1] = Pixel ? 0x80808080u : 0u;
    int8_row(x, D, m > 0.f ? 127.f / m : 1.f, Pixel ? 128 : 0, reinterpret_cast<uint8_t *>(buf));
  }
  return true;
}

// ---- enrolled queries ----
struct Queries {
  const float *query;
  int64_t stride[3];
  int64_t Q, M, D;
  UKernel uk;
  WsumFn wsum;
  int64_t ku, g, groups, tiles;  // k-units per row; queries per group; groups; MR-row tiles per group
  std::unique_ptr<uint32_t[]> xp;  // [group][k block][tile][kcu][MR] words (not zeroed: first touch in pack_group)
  std::vector<float> x_scale;    // int8: per pixel row (Q * M)
  std::vector<float> x_norm2;    // reduced precisions: per pixel row, sum of squares
  const float *row(int64_t r) const { return query + (r / M) * stride[0] + (r % M) * stride[1]; }
  uint32_t *block(int64_t group, int64_t kb) const { return xp.get() + (group * ku + kb) * tiles * uk.mr; }
};

// The fp32 pixel rows of query q (of the whole set): a pointer and, in *ld, the element stride
// between pixels; gathered into buf when a row's own stride is not 1.
const float *query_rows(const Queries &qs, int64_t q, std::vector<float> &buf, int64_t *ld) {
  const int64_t M = qs.M, D = qs.D;
  if (qs.stride[2] == 1) {
    *ld = qs.stride[1];
    return qs.row(q * M);
  }
  buf.resize(size_t(M * D));
  for (int64_t m = 0; m < M; ++m)
    for (int64_t d = 0; d < D; ++d) buf[size_t(m * D + d)] = qs.row(q * M + m)[d * qs.stride[2]];
  *ld = D;
  return buf.data();
}

template <Packing P>
bool pack_group(Queries &qs, int64_t gi) {
  const int64_t M = qs.M, MR = qs.uk.mr;
  const int64_t r0 = gi * qs.g * M, rows = std::min(qs.g, qs.Q - gi * qs.g) * M;
  std::vector<float> tmp;
  std::vector<uint32_t> buf(size_t(qs.ku));
  for (int64_t i = 0; i < qs.tiles * MR; ++i) {
    if (i < rows) {
      RowStats st;
      if (!row_words<P, true>(qs.row(r0 + i), qs.stride[2], qs.D, qs.ku, tmp, buf.data(), &st)) return false;
      if constexpr (P == Packing::int8) qs.x_scale[size_t(r0 + i)] = st.scale;
      if constexpr (P != Packing::fp32) qs.x_norm2[size_t(r0 + i)] = st.norm2;
    } else {
      std::fill(buf.begin(), buf.end(), P == Packing::int8 ? 0x80808080u : 0u);
    }
    const int64_t t = i / MR, lane = i % MR;
    for (int64_t kb = 0; kb < qs.ku; kb += KCU) {
      const int64_t kcu = std::min(KCU, qs.ku - kb);
      uint32_t *out = qs.block(gi, kb) + t * kcu * MR + lane;
      for (int64_t k = 0; k < kcu; ++k) out[k * MR] = buf[size_t(kb + k)];
    }
  }
  return true;
}

// ---- one utterance ----
struct Audio {
  const vpkl_head_args *a;
  int64_t nv, panels;
  std::vector<uint32_t> ap;    // packed A: [panel][ku][NR]
  std::vector<float> a_scale;  // int8: per-frame scale
  std::vector<int32_t> a_sum;  // int8: per-frame sum of the int8 values
  std::vector<float> a_norm2, a_max;  // reduced precisions: per-frame sum of squares, max |a|
  std::vector<float> a_copy;   // A contiguous fp32 (only when its inner stride is not 1)
  const float *arow0 = nullptr;
  int64_t arow_stride = 0;
  const float *arow(int64_t n) const { return arow0 + n * arow_stride; }
};

template <class F>
void parallel_for(int64_t n, int threads, F &&f);

template <Packing P>
bool pack_audio_panel(Audio &au, const Queries &qs, int64_t p) {
  const vpkl_head_args &a = *au.a;
  const int64_t NR = qs.uk.nr;
  uint32_t *out = au.ap.data() + p * qs.ku * NR;
  std::vector<float> tmp;
  std::vector<uint32_t> buf(size_t(qs.ku));
  for (int64_t j = 0; j < NR; ++j) {
    const int64_t n = p * NR + j;
    if (n >= au.nv) {
      for (int64_t k = 0; k < qs.ku; ++k) out[k * NR + j] = 0u;
      continue;
    }
    RowStats st;
    if (!row_words<P, false>(a.audio + n * a.audio_stride[0], a.audio_stride[1], qs.D, qs.ku, tmp, buf.data(), &st))
      return false;
    if constexpr (P != Packing::fp32) au.a_norm2[n] = st.norm2, au.a_max[n] = st.max_abs;
    for (int64_t k = 0; k < qs.ku; ++k) out[k * NR + j] = buf[size_t(k)];
    if constexpr (P == Packing::int8) {
      const int8_t *b = reinterpret_cast<const int8_t *>(buf.data());
      int32_t sum = 0;
      for (int64_t d = 0; d < qs.D; ++d) sum += b[d];
      au.a_scale[n] = st.scale, au.a_sum[n] = sum;
    }
  }
  return true;
}

// f(item, worker) for item in [0, n), items handed out dynamically to min(threads, n) workers
template <class F>
void parallel_for(int64_t n, int threads, F &&f) {
  const int workers = int(std::max<int64_t>(1, std::min<int64_t>(threads, n)));
  std::atomic<int64_t> next{0};
  auto work = [&](int w) {
    for (int64_t i; (i = next.fetch_add(1)) < n;) f(i, w);
  };
  std::vector<std::thread> pool;
  try {
    pool.reserve(size_t(workers - 1));
    for (int w = 1; w < workers; ++w) pool.emplace_back(work, w);
  } catch (...) {  // no more threads to be had: the started ones and this one do the work
  }
  work(0);
  for (auto &t : pool) t.join();
}

// ---- vectorised helpers (cloned for AVX-512 / AVX2 / baseline) ----
VPKL_CLONES void row_max(const float *row, int64_t n, float *col_max, float *out_max) {
  float m = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < n; ++i) {
    col_max[i] = std::max(col_max[i], row[i]);
    m = std::max(m, row[i]);
  }
  *out_max = std::max(*out_max, m);
}

// row_max of the dequantised int8 row: value = row_scale a_scale (acc - 128 a_sum)
VPKL_CLONES void row_max_int8(const int32_t *acc, const float *a_scale, const int32_t *a_sum, float row_scale,
                              int64_t n, float *col_max, float *out_max) {
  float m = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < n; ++i) {
    const float v = row_scale * a_scale[i] * float(acc[i] - 128 * a_sum[i]);
    col_max[i] = std::max(col_max[i], v);
    m = std::max(m, v);
  }
  *out_max = std::max(*out_max, m);
}

VPKL_CLONES void axpy(int64_t n, float w, const float *x, float *y) {
  for (int64_t i = 0; i < n; ++i) y[i] += w * x[i];
}

void portable_wsum(int64_t n, int g, const float *w, int64_t ldw, const float *x, int64_t ldx, int64_t D, float *out,
                   int64_t ldo) {
  for (int q = 0; q < g; ++q) {
    float *o = out + q * ldo;
    std::fill(o, o + D, 0.f);
    for (int64_t i = 0; i < n; ++i) axpy(D, w[q * ldw + i], x + i * ldx, o);
  }
}

// min-max normalisation in place over x[0..n); max = min: 1 everywhere (model/head.py)
void minmax(float *x, int64_t n) {
  float lo = x[0], hi = x[0];
  for (int64_t i = 1; i < n; ++i) lo = std::min(lo, x[i]), hi = std::max(hi, x[i]);
  const float rng = hi - lo;
  for (int64_t i = 0; i < n; ++i) x[i] = rng > 0.f ? (x[i] - lo) / rng : 1.f;
}

struct Scratch {
  std::vector<float> c;        // matchmap block (fp32, bf16)
  std::vector<int32_t> ci;     // matchmap block (int8)
  std::vector<float> aud, im;  // group x nv, group x M
  std::vector<float> qrow;
  std::vector<float> sigma;  // refine(): per-frame error model
};

// Reduced precisions: the frames that could be the localised frame (argmax of aud_att) are
// scored again in fp32, so the localisation does not move where frames nearly tie. The
// rounding error of one reduced-precision product x.a is modelled as a sum of independent
// uniform errors, with standard deviation
//   int8: sqrt(|x|^2 s_a^2 + |a|^2 s_x^2) / sqrt(12)         (s: quantisation steps)
//   bf16: |x| max|a| 2^-9 sqrt(2/3)                          (relative rounding <= 2^-9 each)
// (upper bounds over the query's pixels). lower = max_n (aud_raw[n] - K sd[n]) bounds the true
// best value from below; frame n is a candidate when aud_raw[n] + K sd[n] >= lower.
constexpr float K_SIGMA = 6.f;

template <Packing P>
void refine(const Audio &au, const Queries &qs, int64_t r0, int64_t g, Scratch &s) {
  const int64_t M = qs.M, D = qs.D, nv = au.nv;
  s.sigma.resize(size_t(nv));
  for (int64_t q = 0; q < g; ++q) {
    float x2 = 0.f, sx = 0.f;
    for (int64_t m = 0; m < M; ++m) {
      x2 = std::max(x2, qs.x_norm2[size_t(r0 + q * M + m)]);
      if constexpr (P == Packing::int8) sx = std::max(sx, qs.x_scale[size_t(r0 + q * M + m)]);
    }
    float *lp = s.aud.data() + q * nv, lower = -std::numeric_limits<float>::infinity();
    for (int64_t n = 0; n < nv; ++n) {
      float sd;
      if constexpr (P == Packing::int8)
        sd = std::sqrt((x2 * au.a_scale[n] * au.a_scale[n] + au.a_norm2[n] * sx * sx) / 12.f);
      else
        sd = std::sqrt(x2) * au.a_max[n] * 0.0015947f;  // 2^-9 sqrt(2/3)
      s.sigma[n] = sd;
      lower = std::max(lower, lp[n] - K_SIGMA * sd);
    }
    const float *rows = nullptr;
    int64_t ld = 0;
    for (int64_t n = 0; n < nv; ++n) {
      if (lp[n] + K_SIGMA * s.sigma[n] < lower) continue;  // cannot be the best frame
      if (!rows) rows = query_rows(qs, r0 / M + q, s.qrow, &ld);
      float best = -std::numeric_limits<float>::infinity();
      for (int64_t m = 0; m < M; ++m) best = std::max(best, dot_row(rows + m * ld, au.arow(n), D));
      lp[n] = best;
    }
  }
}

// Per call, for all queries: normalised aud_att over the valid frames, the two contexts.
struct Contexts {
  std::vector<float> att, ictx, actx;  // Q x nv, Q x D, Q x D
};

// The buffers of one call, kept with the enrolled queries so that the next call reuses them
// (no allocation or page faults per utterance).
struct Workspace {
  Audio au;
  std::vector<Scratch> scratch;  // one per worker thread
  Contexts ctx;
};

template <Packing P>
void run_group(const Audio &au, const Queries &qs, int64_t gi, Scratch &s, Contexts &out) {
  const vpkl_head_args &a = *au.a;
  const int64_t M = qs.M, D = qs.D, MR = qs.uk.mr, NR = qs.uk.nr, nv = au.nv, tiles = qs.tiles;
  const int64_t q0 = gi * qs.g, g = std::min(qs.g, qs.Q - q0), rows = g * M, r0 = q0 * M;
  const int64_t ldc_max = std::min(NB, (nv + NR - 1) / NR * NR);
  if constexpr (P == Packing::int8) {
    s.ci.resize(size_t(tiles * MR * ldc_max));
  } else {
    s.c.resize(size_t(tiles * MR * ldc_max));
  }
  s.aud.assign(size_t(g * nv), -std::numeric_limits<float>::infinity());
  s.im.assign(size_t(rows), -std::numeric_limits<float>::infinity());

  for (int64_t n0 = 0; n0 < nv; n0 += NB) {
    const int64_t nbw = std::min(NB, nv - n0), p0 = n0 / NR, np = (nbw + NR - 1) / NR, ldc = np * NR;
    char *c = P == Packing::int8 ? reinterpret_cast<char *>(s.ci.data()) : reinterpret_cast<char *>(s.c.data());
    for (int64_t kb = 0; kb < qs.ku; kb += KCU) {
      const int64_t kcu = std::min(KCU, qs.ku - kb);
      const uint32_t *xp = qs.block(gi, kb);
      for (int64_t p = 0; p < np; ++p) {
        const uint32_t *bp = au.ap.data() + ((p0 + p) * qs.ku + kb) * NR;
        for (int64_t t = 0; t < tiles && t * MR < rows; ++t)
          qs.uk.fn(kcu, xp + t * kcu * MR, bp, c + size_t(t * MR * ldc + p * NR) * 4, ldc, kb == 0);
      }
    }
    // reduce the block: max over pixels per frame, running max over frames per pixel
    for (int64_t r = 0; r < rows; ++r) {
      float *aud = s.aud.data() + (r / M) * nv + n0, *im = s.im.data() + r;
      if constexpr (P == Packing::int8)
        row_max_int8(s.ci.data() + r * ldc, au.a_scale.data() + n0, au.a_sum.data() + n0, qs.x_scale[r0 + r], nbw,
                     aud, im);
      else
        row_max(s.c.data() + r * ldc, nbw, aud, im);
    }
  }

  if constexpr (P != Packing::fp32) refine<P>(au, qs, r0, g, s);

  // attention and the image context (fp32 embeddings); the audio contexts of all queries
  // are one product afterwards (audio_contexts), the score after that (finish)
  for (int64_t q = 0; q < g; ++q) {
    minmax(s.aud.data() + q * nv, nv);
    minmax(s.im.data() + q * M, M);
  }
  std::copy(s.aud.begin(), s.aud.begin() + g * nv, out.att.begin() + q0 * nv);
  for (int64_t q = 0; q < g; ++q) {
    int64_t ld = 0;
    const float *rows = query_rows(qs, q0 + q, s.qrow, &ld);
    qs.wsum(M, 1, s.im.data() + q * M, M, rows, ld, D, out.ictx.data() + (q0 + q) * D, D);
    for (int64_t m = 0; m < M; ++m) a.im_att[(q0 + q) * a.im_att_stride[0] + m * a.im_att_stride[1]] = s.im[q * M + m];
  }
}

// aud_ctx (unscaled) = aud_att A for all queries: columns of A in 64-value slices (one slice of
// every frame stays in L2 while every query uses it), 4 queries at a time.
void audio_contexts(const Audio &au, const Queries &qs, Contexts &out, int64_t slice) {
  const int64_t d0 = slice * 64, w = std::min<int64_t>(64, qs.D - d0), nv = au.nv;
  for (int64_t q = 0; q < qs.Q; q += 4)
    qs.wsum(nv, int(std::min<int64_t>(4, qs.Q - q)), out.att.data() + q * nv, nv, au.arow0 + d0, au.arow_stride, w,
            out.actx.data() + q * qs.D + d0, qs.D);
}

// S = (1 + cos(aud_ctx, im_ctx)) / 2 and aud_att for query q
void finish(const Audio &au, const Queries &qs, const Contexts &c, int64_t q) {
  const vpkl_head_args &a = *au.a;
  const int64_t D = qs.D, nv = au.nv;
  const float *ac = c.actx.data() + q * D, *ic = c.ictx.data() + q * D;
  double dot = 0, na = 0, ni = 0;  // of the unscaled sums; the means divide by nv and M
  for (int64_t d = 0; d < D; ++d) dot += double(ac[d]) * ic[d], na += double(ac[d]) * ac[d], ni += double(ic[d]) * ic[d];
  const double sa = 1.0 / double(nv), si = 1.0 / double(qs.M);
  const double cosv = dot * sa * si / (std::max(std::sqrt(na) * sa, 1e-8) * std::max(std::sqrt(ni) * si, 1e-8));
  a.score[q * a.score_stride] = float((1.0 + cosv) / 2.0);
  for (int64_t n = 0; n < a.N; ++n)
    a.aud_att[q * a.aud_att_stride[0] + n * a.aud_att_stride[1]] = n < nv ? c.att[q * nv + n] : 0.f;
}

int fail(char *err, size_t len, int code, const char *fmt, ...) {
  if (err && len) {
    va_list ap;
    va_start(ap, fmt);
    std::vsnprintf(err, len, fmt, ap);
    va_end(ap);
  }
  return code;
}

// threads <= 0: every hardware thread; never more than the hardware has
int resolve_threads(int threads) {
  const int hw = int(std::max(1u, std::thread::hardware_concurrency()));
  return threads > 0 ? std::min(threads, hw) : hw;
}

template <Packing P>
int prepare(Queries &qs, int threads, char *err, size_t err_len) {
  threads = resolve_threads(threads);
  qs.ku = (qs.D + ku_of(P) - 1) / ku_of(P);
  qs.g = std::clamp<int64_t>(ROWS_TARGET / qs.M, 1, qs.Q);
  qs.g = std::min(qs.g, (qs.Q + threads - 1) / threads);  // every thread gets a group
  qs.groups = (qs.Q + qs.g - 1) / qs.g;
  qs.tiles = (qs.g * qs.M + qs.uk.mr - 1) / qs.uk.mr;
  try {
    qs.xp.reset(new uint32_t[size_t(qs.groups * qs.tiles * qs.uk.mr * qs.ku)]);
    if (P == Packing::int8) qs.x_scale.resize(size_t(qs.Q * qs.M));
    if (P != Packing::fp32) qs.x_norm2.resize(size_t(qs.Q * qs.M));
  } catch (const std::bad_alloc &) {
    return fail(err, err_len, VPKL_ERR_MEMORY, "out of memory enrolling %lld queries", (long long)qs.Q);
  }
  std::atomic<bool> finite{true};
  parallel_for(qs.groups, threads, [&](int64_t gi, int) {
    if (!pack_group<P>(qs, gi)) finite = false;
  });
  if (!finite) return fail(err, err_len, VPKL_ERR_ARGUMENT, "query: contains NaN or Inf");
  return VPKL_OK;
}

template <Packing P>
int score(const Queries &qs, Workspace &ws, const vpkl_head_args &a, int threads, char *err, size_t err_len) {
  threads = resolve_threads(threads);
  Audio &au = ws.au;
  au.a = &a;
  au.nv = a.n_valid;
  au.panels = (au.nv + qs.uk.nr - 1) / qs.uk.nr;
  const int64_t macs = qs.Q * qs.M * au.nv * qs.D;
  threads = int(std::max<int64_t>(1, std::min<int64_t>(threads, 1 + macs / MACS_PER_THREAD)));
  try {
    au.ap.resize(size_t(au.panels * qs.ku * qs.uk.nr));
    if (P == Packing::int8) au.a_scale.resize(size_t(au.nv)), au.a_sum.resize(size_t(au.nv));
    if (P != Packing::fp32) au.a_norm2.resize(size_t(au.nv)), au.a_max.resize(size_t(au.nv));
    if (a.audio_stride[1] == 1) {
      au.arow0 = a.audio, au.arow_stride = a.audio_stride[0];
    } else {
      au.a_copy.resize(size_t(au.nv * qs.D));
      for (int64_t n = 0; n < au.nv; ++n)
        for (int64_t d = 0; d < qs.D; ++d) au.a_copy[n * qs.D + d] = a.audio[n * a.audio_stride[0] + d * a.audio_stride[1]];
      au.arow0 = au.a_copy.data(), au.arow_stride = qs.D;
    }
  } catch (const std::bad_alloc &) {
    return fail(err, err_len, VPKL_ERR_MEMORY, "out of memory packing the audio (%lld frames x %lld)",
                (long long)au.nv, (long long)qs.D);
  }
  std::atomic<bool> finite{true};
  parallel_for(au.panels, threads, [&](int64_t p, int) {
    if (!pack_audio_panel<P>(au, qs, p)) finite = false;
  });
  if (!finite) return fail(err, err_len, VPKL_ERR_ARGUMENT, "audio: contains NaN or Inf");

  std::atomic<bool> oom{false};
  Contexts &ctx = ws.ctx;
  try {
    if (ws.scratch.size() < size_t(threads)) ws.scratch.resize(size_t(threads));
    ctx.att.resize(size_t(qs.Q * au.nv)), ctx.ictx.resize(size_t(qs.Q * qs.D)), ctx.actx.resize(size_t(qs.Q * qs.D));
  } catch (const std::bad_alloc &) {
    oom = true;
  }
  if (!oom)
    parallel_for(qs.groups, threads, [&](int64_t gi, int w) {
      if (oom.load()) return;
      try {
        run_group<P>(au, qs, gi, ws.scratch[size_t(w)], ctx);
      } catch (const std::bad_alloc &) {
        oom = true;
      }
    });
  if (oom) return fail(err, err_len, VPKL_ERR_MEMORY, "out of memory scoring %lld queries", (long long)qs.Q);
  parallel_for((qs.D + 63) / 64, threads, [&](int64_t slice, int) { audio_contexts(au, qs, ctx, slice); });
  parallel_for(qs.Q, threads, [&](int64_t q, int) { finish(au, qs, ctx, q); });
  return VPKL_OK;
}

int check_sizes(int64_t Q, int64_t M, int64_t D, char *err, size_t err_len) {
  if (Q < 1 || M < 1 || D < 1)
    return fail(err, err_len, VPKL_ERR_ARGUMENT, "query: shape (%lld, %lld, %lld), expected Q, M, D >= 1",
                (long long)Q, (long long)M, (long long)D);
  return VPKL_OK;
}

int check_audio(const vpkl_head_args &a, int64_t D, char *err, size_t err_len) {
  if (a.N < 1 || a.D != D)
    return fail(err, err_len, VPKL_ERR_ARGUMENT, "audio: shape (%lld, %lld), expected N >= 1 frames of D = %lld",
                (long long)a.N, (long long)a.D, (long long)D);
  if (a.n_valid < 1 || a.n_valid > a.N)
    return fail(err, err_len, VPKL_ERR_ARGUMENT, "n_valid: %lld, expected 1 to N = %lld", (long long)a.n_valid,
                (long long)a.N);
  if (!a.audio || !a.score || !a.aud_att || !a.im_att)
    return fail(err, err_len, VPKL_ERR_ARGUMENT, "a NULL audio or output pointer");
  return VPKL_OK;
}

}  // namespace
}  // namespace vpkl::cpu

struct vpkl_head_queries {
  vpkl::cpu::Queries q;
  std::mutex mu;  // guards ws; a concurrent call on the same queries uses its own buffers
  vpkl::cpu::Workspace ws;
};

extern "C" int vpkl_head_cpu_prepare(const float *query, const int64_t query_stride[3], int64_t Q, int64_t M,
                                     int64_t D, vpkl_precision precision, int threads, vpkl_head_queries **out,
                                     char *err, size_t err_len) {
  using namespace vpkl::cpu;
  if (!out) return fail(err, err_len, VPKL_ERR_ARGUMENT, "out: NULL");
  *out = nullptr;
  if (int rc = check_sizes(Q, M, D, err, err_len)) return rc;
  if (!query || !query_stride) return fail(err, err_len, VPKL_ERR_ARGUMENT, "query: NULL");
  if (precision != VPKL_FP32 && precision != VPKL_BF16 && precision != VPKL_INT8)
    return fail(err, err_len, VPKL_ERR_UNSUPPORTED, "precision %d: expected VPKL_FP32, VPKL_BF16 or VPKL_INT8",
                int(precision));
  if (precision == VPKL_INT8 && D > INT8_MAX_D)
    return fail(err, err_len, VPKL_ERR_UNSUPPORTED,
                "int8: D = %lld values per embedding; the int32 sums hold D <= %lld (use bf16 or fp32)", (long long)D,
                (long long)INT8_MAX_D);
  auto *h = new (std::nothrow) vpkl_head_queries;
  if (!h) return fail(err, err_len, VPKL_ERR_MEMORY, "out of memory");
  Queries &qs = h->q;
  qs.query = query;
  for (int i = 0; i < 3; ++i) qs.stride[i] = query_stride[i];
  qs.Q = Q, qs.M = M, qs.D = D;
  qs.uk = select(precision);
  qs.wsum = select_wsum();
  int rc;
  switch (qs.uk.packing) {
    case Packing::fp32: rc = prepare<Packing::fp32>(qs, threads, err, err_len); break;
    case Packing::bf16: rc = prepare<Packing::bf16>(qs, threads, err, err_len); break;
    default: rc = prepare<Packing::int8>(qs, threads, err, err_len); break;
  }
  if (rc != VPKL_OK) {
    delete h;
    return rc;
  }
  *out = h;
  return VPKL_OK;
}

extern "C" int vpkl_head_cpu_score(const vpkl_head_queries *h, const vpkl_head_args *args, int threads, char *err,
                                   size_t err_len) {
  using namespace vpkl::cpu;
  if (!h || !args) return fail(err, err_len, VPKL_ERR_ARGUMENT, "queries or args: NULL");
  const Queries &qs = h->q;
  if (int rc = check_audio(*args, qs.D, err, err_len)) return rc;
  auto *mutable_h = const_cast<vpkl_head_queries *>(h);
  std::unique_lock<std::mutex> lock(mutable_h->mu, std::try_to_lock);
  Workspace own;
  Workspace &ws = lock.owns_lock() ? mutable_h->ws : own;
  switch (qs.uk.packing) {
    case Packing::fp32: return score<Packing::fp32>(qs, ws, *args, threads, err, err_len);
    case Packing::bf16: return score<Packing::bf16>(qs, ws, *args, threads, err, err_len);
    default: return score<Packing::int8>(qs, ws, *args, threads, err, err_len);
  }
}

extern "C" void vpkl_head_cpu_release(vpkl_head_queries *h) { delete h; }

extern "C" int vpkl_head_cpu(const vpkl_head_args *args, vpkl_precision precision, int threads, char *err,
                             size_t err_len) {
  using namespace vpkl::cpu;
  if (!args) return fail(err, err_len, VPKL_ERR_ARGUMENT, "args: NULL");
  if (int rc = check_sizes(args->Q, args->M, args->D, err, err_len)) return rc;
  if (int rc = check_audio(*args, args->D, err, err_len)) return rc;
  vpkl_head_queries *h = nullptr;
  int rc = vpkl_head_cpu_prepare(args->query, args->query_stride, args->Q, args->M, args->D, precision, threads, &h,
                                 err, err_len);
  if (rc == VPKL_OK) rc = vpkl_head_cpu_score(h, args, threads, err, err_len);
  vpkl_head_cpu_release(h);
  return rc;
}

extern "C" const char *vpkl_head_cpu_kernel(vpkl_precision precision) {
  return vpkl::cpu::select(precision).name;
}
