/* vpkl fused localising-attention head, CUDA implementation of native/include/vpkl/head.h.
 *
 * Math: Nortje & Kamper, SLT 2022, Sec. 3.2 (reference: model/head.py). For each query q the
 * matchmap I[q] A^T (M x N) is only ever held one 64 x 64 tile at a time in shared memory.
 *
 * Kernel 1 (match_kernel), grid (Q, T) with T = ceil(n_valid / 64), 256 threads per block:
 *   block (q, t) owns frames [64t, 64t + 64) (only frames < n_valid are ever computed) and
 *   walks the M pixels in chunks of 64. Per chunk the 64 x 64 tile is accumulated over D in
 *   steps of 32 (both operands staged in shared memory, zero-padded past M, n_valid, D):
 *     VPKL_FP32: fp32 FMA on CUDA cores, each thread owns a 4 x 4 sub-tile (strided 16 apart);
 *     VPKL_BF16: tensor cores via nvcuda::wmma 16x16x16, inputs rounded to __nv_bfloat16 while
 *                staging, fp32 accumulators; 8 warps each own a 16 x 32 strip (2 fragments).
 *   The tile is stored to shared memory as fp32, then
 *     threads 0..63   keep a running max over pixels of their frame  -> aud_raw[q, n]  (Q x n_valid)
 *     threads 64..127 take the max over the tile's valid frames of their pixel
 *                                                                   -> im_part[q, t, m] (Q x T x M)
 *   Every frame tile holds at least one valid frame, so no -inf sentinel reaches kernel 2.
 * Kernel 2 (attend_kernel), one 256-thread block per query:
 *   im_raw[m] = max_t im_part[q, t, m] (deterministic, no atomics); min-max normalisation of
 *   aud_raw over the n_valid frames and of im_raw over the M pixels (range 0: attention 1,
 *   aud_att 0 past n_valid); outputs written through their strides; contexts
 *   aud_ctx = (1/n_valid) sum_n aud_att[n] A[n], im_ctx = (1/M) sum_m im_att[m] I[q, m] in fp32
 *   from the original fp32 inputs (for bf16 too); S = (1 + cos) / 2 with torch 2.x's
 *   cosine_similarity convention: each norm is clamped separately, dot / (max(|a|,eps) max(|b|,eps)).
 * Scratch (aud_raw, im_part) comes from cudaMallocAsync and is released with cudaFreeAsync on
 * the same stream, so vpkl_head_cuda never synchronises the host.
 */
#include "vpkl/head.h"

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <mma.h>

#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace {

constexpr int kTM = 64;          // pixels per tile
constexpr int kTN = 64;          // frames per tile
constexpr int kTK = 32;          // D step staged in shared memory
constexpr int kThreads = 256;    // both kernels
constexpr int kCP = kTN + 4;     // pitch of the fp32 tile (wmma float store needs a multiple of 4)
constexpr float kEps = 1e-8f;

struct Params {
  const float *I; int64_t si0, si1, si2;   // query (Q, M, D)
  const float *A; int64_t sa0, sa1;        // audio (N, D)
  int64_t M, N, D, nv;
  int tiles;                               // ceil(nv / kTN)
  float *aud_raw;                          // (Q, nv) scratch
  float *im_part;                          // (Q, tiles, M) scratch
  float *score; int64_t ss;
  float *aud_att; int64_t sat0, sat1;
  float *im_att; int64_t sim0, sim1;
};

template <typename T> __device__ __forceinline__ T to_smem(float v);
template <> __device__ __forceinline__ float to_smem<float>(float v) { return v; }
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
template <> __device__ __forceinline__ __nv_bfloat16 to_smem<__nv_bfloat16>(float v) { return __float2bfloat16(v); }
#endif

// Stage rows [row0, row0 + 64) x columns [k0, k0 + 32) of a strided (rows x D) matrix into
// dst[64][PITCH], zero outside rows < nrows and columns < D.
template <typename T, int PITCH>
__device__ void load_tile(T *dst, const float *src, int64_t rs, int64_t cs, int64_t row0,
                          int64_t nrows, int64_t k0, int64_t D) {
  for (int e = threadIdx.x; e < kTM * kTK; e += kThreads) {
    const int r = e / kTK, c = e % kTK;
    float v = 0.f;
    if (row0 + r < nrows && k0 + c < D) v = src[(row0 + r) * rs + (k0 + c) * cs];
    dst[r * PITCH + c] = to_smem<T>(v);
  }
}

// Matchmap tile (pixels m0.., frames n0..) in fp32 on CUDA cores, written to Cs.
__device__ void tile_fp32(const Params &p, const float *Iq, int64_t m0, int64_t n0, float (*Cs)[kCP]) {
  __shared__ float As[kTM][kTK + 1], Bs[kTN][kTK + 1];
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  float acc[4][4] = {};
  for (int64_t k0 = 0; k0 < p.D; k0 += kTK) {
    load_tile<float, kTK + 1>(&As[0][0], Iq, p.si1, p.si2, m0, p.M, k0, p.D);
    load_tile<float, kTK + 1>(&Bs[0][0], p.A, p.sa0, p.sa1, n0, p.nv, k0, p.D);
    __syncthreads();
#pragma unroll 8
    for (int k = 0; k < kTK; ++k) {
      float a[4], b[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) { a[i] = As[ty + 16 * i][k]; b[i] = Bs[tx + 16 * i][k]; }
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
    __syncthreads();  // As/Bs are reloaded next step
  }
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) Cs[ty + 16 * i][tx + 16 * j] = acc[i][j];
}

// Same tile from bf16-rounded inputs on tensor cores (fp32 accumulation).
__device__ void tile_bf16(const Params &p, const float *Iq, int64_t m0, int64_t n0, float (*Cs)[kCP]) {
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
  using namespace nvcuda;
  constexpr int kBP = kTK + 8;  // pitch of the bf16 operands (wmma 16-bit load needs a multiple of 8)
  __shared__ __align__(32) __nv_bfloat16 As[kTM][kBP];
  __shared__ __align__(32) __nv_bfloat16 Bs[kTN][kBP];
  const int warp = threadIdx.x / 32;
  const int wr = warp / 2;        // pixel block of 16 (0..3)
  const int wc = (warp % 2) * 2;  // first of two frame blocks of 16
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> c[2];
  wmma::fill_fragment(c[0], 0.f);
  wmma::fill_fragment(c[1], 0.f);
  for (int64_t k0 = 0; k0 < p.D; k0 += kTK) {
    load_tile<__nv_bfloat16, kBP>(&As[0][0], Iq, p.si1, p.si2, m0, p.M, k0, p.D);
    load_tile<__nv_bfloat16, kBP>(&Bs[0][0], p.A, p.sa0, p.sa1, n0, p.nv, k0, p.D);
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kTK; kk += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> a;
      wmma::load_matrix_sync(a, &As[wr * 16][kk], kBP);
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        // B = A^T (k x n): frame rows of Bs read as a column-major k x n matrix.
        wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> b;
        wmma::load_matrix_sync(b, &Bs[(wc + j) * 16][kk], kBP);
        wmma::mma_sync(c[j], a, b, c[j]);
      }
    }
    __syncthreads();
  }
  for (int j = 0; j < 2; ++j)
    wmma::store_matrix_sync(&Cs[wr * 16][(wc + j) * 16], c[j], kCP, wmma::mem_row_major);
#else
  (void)p; (void)Iq; (void)m0; (void)n0; (void)Cs;
  __trap();  // not reachable: the host refuses bf16 below compute capability 8.0
#endif
}

template <bool kBF16>
__global__ void __launch_bounds__(kThreads) match_kernel(Params p) {
  __shared__ __align__(32) float Cs[kTM][kCP];
  const int64_t q = blockIdx.x;
  const int t = blockIdx.y;
  const int64_t n0 = (int64_t)t * kTN;
  const int ncols = (int)(p.nv - n0 < kTN ? p.nv - n0 : kTN);
  const float *Iq = p.I + q * p.si0;
  float *im_part = p.im_part + (q * p.tiles + t) * p.M;
  float amax = -INFINITY;  // thread n < 64: running max over pixels of frame n0 + n
  for (int64_t m0 = 0; m0 < p.M; m0 += kTM) {
    if (kBF16) tile_bf16(p, Iq, m0, n0, Cs); else tile_fp32(p, Iq, m0, n0, Cs);
    __syncthreads();
    const int mrows = (int)(p.M - m0 < kTM ? p.M - m0 : kTM);
    const int tid = threadIdx.x;
    if (tid < kTN) {
      if (tid < ncols)
        for (int r = 0; r < mrows; ++r) amax = fmaxf(amax, Cs[r][tid]);
    } else if (tid < kTN + kTM) {
      const int r = tid - kTN;
      if (r < mrows) {
        float v = -INFINITY;
        for (int c = 0; c < ncols; ++c) v = fmaxf(v, Cs[r][c]);
        im_part[m0 + r] = v;
      }
    }
    __syncthreads();  // Cs is overwritten by the next pixel chunk
  }
  if ((int)threadIdx.x < ncols) p.aud_raw[q * p.nv + n0 + threadIdx.x] = amax;
}

struct MaxOp { __device__ float operator()(float a, float b) const { return fmaxf(a, b); } };
struct MinOp { __device__ float operator()(float a, float b) const { return fminf(a, b); } };
struct SumOp { __device__ float operator()(float a, float b) const { return a + b; } };

// Reduce v over the block; every thread gets the result.
template <class Op>
__device__ float block_reduce(float v, Op op) {
  __shared__ float buf[kThreads / 32];
  for (int off = 16; off > 0; off >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, off));
  __syncthreads();  // earlier readers of buf are done
  if (threadIdx.x % 32 == 0) buf[threadIdx.x / 32] = v;
  __syncthreads();
  float r = buf[0];
  for (int i = 1; i < kThreads / 32; ++i) r = op(r, buf[i]);
  return r;
}

__global__ void __launch_bounds__(kThreads) attend_kernel(Params p) {
  const int64_t q = blockIdx.x;
  const int tid = threadIdx.x;
  float *aud = p.aud_raw + q * p.nv;
  float *im = p.im_part + q * p.tiles * p.M;  // tile 0's row receives the combined maxima
  float ilo = INFINITY, ihi = -INFINITY, alo = INFINITY, ahi = -INFINITY;
  for (int64_t m = tid; m < p.M; m += kThreads) {
    float v = im[m];
    for (int t = 1; t < p.tiles; ++t) v = fmaxf(v, im[(int64_t)t * p.M + m]);
    im[m] = v;
    ilo = fminf(ilo, v); ihi = fmaxf(ihi, v);
  }
  for (int64_t n = tid; n < p.nv; n += kThreads) { alo = fminf(alo, aud[n]); ahi = fmaxf(ahi, aud[n]); }
  ilo = block_reduce(ilo, MinOp()); ihi = block_reduce(ihi, MaxOp());
  alo = block_reduce(alo, MinOp()); ahi = block_reduce(ahi, MaxOp());
  const float irng = ihi - ilo, arng = ahi - alo;
  // Each thread normalises the entries it combined above, in place, and writes the outputs.
  for (int64_t m = tid; m < p.M; m += kThreads) {
    const float a = irng > 0.f ? (im[m] - ilo) / irng : 1.f;
    im[m] = a;
    p.im_att[q * p.sim0 + m * p.sim1] = a;
  }
  for (int64_t n = tid; n < p.N; n += kThreads) {
    float a = 0.f;
    if (n < p.nv) { a = arng > 0.f ? (aud[n] - alo) / arng : 1.f; aud[n] = a; }
    p.aud_att[q * p.sat0 + n * p.sat1] = a;
  }
  __syncthreads();  // the context loops read every thread's attention values
  float dot = 0.f, na = 0.f, nb = 0.f;
  const float *Iq = p.I + q * p.si0;
  for (int64_t d = tid; d < p.D; d += kThreads) {
    float ac = 0.f, ic = 0.f;
    for (int64_t n = 0; n < p.nv; ++n) ac = fmaf(aud[n], p.A[n * p.sa0 + d * p.sa1], ac);
    for (int64_t m = 0; m < p.M; ++m) ic = fmaf(im[m], Iq[m * p.si1 + d * p.si2], ic);
    ac /= (float)p.nv;
    ic /= (float)p.M;
    dot = fmaf(ac, ic, dot); na = fmaf(ac, ac, na); nb = fmaf(ic, ic, nb);
  }
  dot = block_reduce(dot, SumOp()); na = block_reduce(na, SumOp()); nb = block_reduce(nb, SumOp());
  if (tid == 0) {
    const float cosv = dot / (fmaxf(sqrtf(na), kEps) * fmaxf(sqrtf(nb), kEps));
    p.score[q * p.ss] = 0.5f * (1.f + cosv);
  }
}

int fail(char *err, size_t err_len, int code, const char *fmt, ...) {
  if (err != nullptr && err_len > 0) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
  }
  return code;
}

int validate(const vpkl_head_args *a, vpkl_precision precision, char *err, size_t err_len) {
  if (a == nullptr) return fail(err, err_len, VPKL_ERR_ARGUMENT, "args is NULL");
  if (a->Q < 1) return fail(err, err_len, VPKL_ERR_ARGUMENT, "Q must be >= 1 (got %lld)", (long long)a->Q);
  if (a->M < 1) return fail(err, err_len, VPKL_ERR_ARGUMENT, "M must be >= 1 (got %lld)", (long long)a->M);
  if (a->N < 1) return fail(err, err_len, VPKL_ERR_ARGUMENT, "N must be >= 1 (got %lld)", (long long)a->N);
  if (a->D < 1) return fail(err, err_len, VPKL_ERR_ARGUMENT, "D must be >= 1 (got %lld)", (long long)a->D);
  if (a->n_valid < 1 || a->n_valid > a->N)
    return fail(err, err_len, VPKL_ERR_ARGUMENT, "n_valid must be in [1, N=%lld] (got %lld)",
                (long long)a->N, (long long)a->n_valid);
  if (a->query == nullptr) return fail(err, err_len, VPKL_ERR_ARGUMENT, "query is NULL");
  if (a->audio == nullptr) return fail(err, err_len, VPKL_ERR_ARGUMENT, "audio is NULL");
  if (a->score == nullptr) return fail(err, err_len, VPKL_ERR_ARGUMENT, "score is NULL");
  if (a->aud_att == nullptr) return fail(err, err_len, VPKL_ERR_ARGUMENT, "aud_att is NULL");
  if (a->im_att == nullptr) return fail(err, err_len, VPKL_ERR_ARGUMENT, "im_att is NULL");
  if (a->Q > 0x7fffffffLL)  // gridDim.x
    return fail(err, err_len, VPKL_ERR_ARGUMENT, "Q too large for one launch (got %lld)", (long long)a->Q);
  if ((a->n_valid + kTN - 1) / kTN > 65535)  // gridDim.y
    return fail(err, err_len, VPKL_ERR_ARGUMENT, "n_valid too large (got %lld)", (long long)a->n_valid);
  if (precision == VPKL_INT8)
    return fail(err, err_len, VPKL_ERR_UNSUPPORTED, "precision int8 is not implemented by the CUDA kernel");
  if (precision != VPKL_FP32 && precision != VPKL_BF16)
    return fail(err, err_len, VPKL_ERR_ARGUMENT, "unknown precision %d", (int)precision);
  return VPKL_OK;
}

int cuda_fail(char *err, size_t err_len, const char *what, cudaError_t e) {
  return fail(err, err_len, e == cudaErrorMemoryAllocation ? VPKL_ERR_MEMORY : VPKL_ERR_DEVICE,
              "%s: %s", what, cudaGetErrorString(e));
}

}  // namespace

extern "C" int vpkl_head_has_cuda(void) { return 1; }

extern "C" int vpkl_head_cuda(const vpkl_head_args *args, vpkl_precision precision, void *stream,
                              char *err, size_t err_len) {
  int rc = validate(args, precision, err, err_len);
  if (rc != VPKL_OK) return rc;
  cudaError_t e;
  if (precision == VPKL_BF16) {
    int dev = 0, major = 0;
    if ((e = cudaGetDevice(&dev)) != cudaSuccess) return cuda_fail(err, err_len, "cudaGetDevice", e);
    if ((e = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev)) != cudaSuccess)
      return cuda_fail(err, err_len, "cudaDeviceGetAttribute", e);
    if (major < 8)
      return fail(err, err_len, VPKL_ERR_UNSUPPORTED,
                  "precision bf16 needs compute capability >= 8.0 (device %d has %d.x)", dev, major);
  }
  const vpkl_head_args &a = *args;
  cudaStream_t s = (cudaStream_t)stream;
  Params p;
  p.I = a.query; p.si0 = a.query_stride[0]; p.si1 = a.query_stride[1]; p.si2 = a.query_stride[2];
  p.A = a.audio; p.sa0 = a.audio_stride[0]; p.sa1 = a.audio_stride[1];
  p.M = a.M; p.N = a.N; p.D = a.D; p.nv = a.n_valid;
  p.tiles = (int)((a.n_valid + kTN - 1) / kTN);
  p.score = a.score; p.ss = a.score_stride;
  p.aud_att = a.aud_att; p.sat0 = a.aud_att_stride[0]; p.sat1 = a.aud_att_stride[1];
  p.im_att = a.im_att; p.sim0 = a.im_att_stride[0]; p.sim1 = a.im_att_stride[1];

  const size_t n_aud = (size_t)a.Q * (size_t)a.n_valid;
  const size_t n_im = (size_t)a.Q * (size_t)p.tiles * (size_t)a.M;
  float *scratch = nullptr;
  if ((e = cudaMallocAsync((void **)&scratch, (n_aud + n_im) * sizeof(float), s)) != cudaSuccess)
    return cuda_fail(err, err_len, "cudaMallocAsync (scratch)", e);
  p.aud_raw = scratch;
  p.im_part = scratch + n_aud;

  const dim3 grid1((unsigned)a.Q, (unsigned)p.tiles);
  if (precision == VPKL_BF16) match_kernel<true><<<grid1, kThreads, 0, s>>>(p);
  else match_kernel<false><<<grid1, kThreads, 0, s>>>(p);
  e = cudaGetLastError();
  if (e == cudaSuccess) {
    attend_kernel<<<(unsigned)a.Q, kThreads, 0, s>>>(p);
    e = cudaGetLastError();
    rc = e == cudaSuccess ? VPKL_OK : fail(err, err_len, VPKL_ERR_DEVICE, "attend_kernel launch: %s", cudaGetErrorString(e));
  } else {
    rc = fail(err, err_len, VPKL_ERR_DEVICE, "match_kernel launch: %s", cudaGetErrorString(e));
  }
  const cudaError_t ef = cudaFreeAsync(scratch, s);
  if (rc == VPKL_OK && ef != cudaSuccess) rc = cuda_fail(err, err_len, "cudaFreeAsync (scratch)", ef);
  return rc;
}

namespace {
// Owns the host and device buffers of vpkl_head_cuda_host; frees them on every path.
struct HostRun {
  float *h[5] = {};  // query, audio, score, aud_att, im_att (contiguous host copies)
  float *d[5] = {};  // device counterparts
  cudaStream_t stream = nullptr;
  ~HostRun() {
    if (stream != nullptr) cudaStreamSynchronize(stream);
    for (float *x : d) if (x != nullptr) cudaFree(x);
    for (float *x : h) free(x);
    if (stream != nullptr) cudaStreamDestroy(stream);
  }
};
}  // namespace

extern "C" int vpkl_head_cuda_host(const vpkl_head_args *args, vpkl_precision precision, char *err,
                                   size_t err_len) {
  int rc = validate(args, precision, err, err_len);
  if (rc != VPKL_OK) return rc;
  int count = 0;
  cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) return fail(err, err_len, VPKL_ERR_DEVICE, "no CUDA device: %s", cudaGetErrorString(e));
  if (count < 1) return fail(err, err_len, VPKL_ERR_DEVICE, "no CUDA device: cudaGetDeviceCount found none");

  const vpkl_head_args &a = *args;
  const int64_t Q = a.Q, M = a.M, N = a.N, D = a.D;
  const size_t n[5] = {(size_t)(Q * M * D), (size_t)(N * D), (size_t)Q, (size_t)(Q * N), (size_t)(Q * M)};
  HostRun run;
  for (int i = 0; i < 5; ++i) {
    run.h[i] = (float *)malloc(n[i] * sizeof(float));
    if (run.h[i] == nullptr) return fail(err, err_len, VPKL_ERR_MEMORY, "host allocation of %zu floats failed", n[i]);
    if ((e = cudaMalloc((void **)&run.d[i], n[i] * sizeof(float))) != cudaSuccess)
      return cuda_fail(err, err_len, "cudaMalloc", e);
  }
  // Gather the inputs through their strides into contiguous arrays.
  for (int64_t q = 0; q < Q; ++q)
    for (int64_t m = 0; m < M; ++m)
      for (int64_t k = 0; k < D; ++k)
        run.h[0][(q * M + m) * D + k] = a.query[q * a.query_stride[0] + m * a.query_stride[1] + k * a.query_stride[2]];
  for (int64_t i = 0; i < N; ++i)
    for (int64_t k = 0; k < D; ++k) run.h[1][i * D + k] = a.audio[i * a.audio_stride[0] + k * a.audio_stride[1]];

  if ((e = cudaStreamCreateWithFlags(&run.stream, cudaStreamNonBlocking)) != cudaSuccess) {
    run.stream = nullptr;
    return cuda_fail(err, err_len, "cudaStreamCreate", e);
  }
  for (int i = 0; i < 2; ++i)
    if ((e = cudaMemcpyAsync(run.d[i], run.h[i], n[i] * sizeof(float), cudaMemcpyHostToDevice, run.stream)) != cudaSuccess)
      return cuda_fail(err, err_len, "cudaMemcpyAsync (inputs)", e);

  vpkl_head_args da = a;
  da.query = run.d[0];
  da.query_stride[0] = M * D; da.query_stride[1] = D; da.query_stride[2] = 1;
  da.audio = run.d[1];
  da.audio_stride[0] = D; da.audio_stride[1] = 1;
  da.score = run.d[2]; da.score_stride = 1;
  da.aud_att = run.d[3]; da.aud_att_stride[0] = N; da.aud_att_stride[1] = 1;
  da.im_att = run.d[4]; da.im_att_stride[0] = M; da.im_att_stride[1] = 1;
  if ((rc = vpkl_head_cuda(&da, precision, run.stream, err, err_len)) != VPKL_OK) return rc;

  for (int i = 2; i < 5; ++i)
    if ((e = cudaMemcpyAsync(run.h[i], run.d[i], n[i] * sizeof(float), cudaMemcpyDeviceToHost, run.stream)) != cudaSuccess)
      return cuda_fail(err, err_len, "cudaMemcpyAsync (outputs)", e);
  if ((e = cudaStreamSynchronize(run.stream)) != cudaSuccess)
    return fail(err, err_len, VPKL_ERR_DEVICE, "kernel execution: %s", cudaGetErrorString(e));

  // Scatter the outputs through their strides.
  for (int64_t q = 0; q < Q; ++q) {
    a.score[q * a.score_stride] = run.h[2][q];
    for (int64_t i = 0; i < N; ++i) a.aud_att[q * a.aud_att_stride[0] + i * a.aud_att_stride[1]] = run.h[3][q * N + i];
    for (int64_t m = 0; m < M; ++m) a.im_att[q * a.im_att_stride[0] + m * a.im_att_stride[1]] = run.h[4][q * M + m];
  }
  return VPKL_OK;
}
