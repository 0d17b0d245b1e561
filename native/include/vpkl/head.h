/* vpkl fused localising-attention head: C interface.
 *
 * Scores Q query images against one utterance without writing the Q x M x N matchmap
 * (Nortje & Kamper, SLT 2022, Sec. 3.2; vpkl's model/head.py is the reference):
 *
 *   matchmap[q,m,n] = sum_d I[q,m,d] A[n,d]
 *   aud_raw[q,n]    = max_m matchmap[q,m,n]                      (n < n_valid)
 *   im_raw[q,m]     = max_{n < n_valid} matchmap[q,m,n]
 *   aud_att[q,n]    = (aud_raw - min) / (max - min) over the n_valid frames, 0 for n >= n_valid
 *   im_att[q,m]     = (im_raw - min) / (max - min) over the M pixels
 *                     (max = min: the attention is 1 everywhere, as in the reference)
 *   aud_ctx[q]      = (1/n_valid) sum_n aud_att[q,n] A[n]         (D)
 *   im_ctx[q]       = (1/M) sum_m im_att[q,m] I[q,m]              (D)
 *   S[q]            = (1 + cos(aud_ctx[q], im_ctx[q])) / 2
 *   cos(a, b)       = a.b / (max(|a|, 1e-8) max(|b|, 1e-8))           (torch's cosine_similarity)
 *
 * The interface is plain pointers and strides (in elements, any sign; the inner stride need
 * not be 1) so that ONNX Runtime custom ops and TensorRT plugins can wrap the same kernels.
 * Outputs are written through their own strides. All functions return 0 on success and a
 * VPKL_ERR_* code otherwise, with a message in err (if err != NULL and err_len > 0).
 */
#ifndef VPKL_HEAD_H
#define VPKL_HEAD_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  VPKL_FP32 = 0, /* fp32 products, fp32 accumulation */
  VPKL_BF16 = 1, /* matchmap from bf16-rounded inputs, fp32 accumulation; contexts in fp32 */
  VPKL_INT8 = 2  /* matchmap from int8 inputs (per-row scales), int32 accumulation; contexts in fp32;
                    D <= 65536 (the int32 sums) */
} vpkl_precision;

enum {
  VPKL_OK = 0,
  VPKL_ERR_ARGUMENT = 1,    /* a size, pointer or n_valid out of range */
  VPKL_ERR_UNSUPPORTED = 2, /* precision not available on this device/build */
  VPKL_ERR_MEMORY = 3,      /* allocation failed */
  VPKL_ERR_DEVICE = 4       /* CUDA runtime error (no device, launch failure, ...) */
};

typedef struct {
  /* inputs, float32 */
  const float *query;   /* (Q, M, D) query pixel embeddings */
  int64_t query_stride[3];
  const float *audio;   /* (N, D) frame embeddings of one utterance */
  int64_t audio_stride[2];
  int64_t Q, M, N, D;   /* all >= 1 */
  int64_t n_valid;      /* valid frames, 1 <= n_valid <= N */
  /* outputs, float32 */
  float *score;         /* (Q) S in [0, 1] */
  int64_t score_stride;
  float *aud_att;       /* (Q, N), 0 for frames >= n_valid */
  int64_t aud_att_stride[2];
  float *im_att;        /* (Q, M) */
  int64_t im_att_stride[2];
} vpkl_head_args;

/* CPU kernel. threads <= 0: all hardware threads (more than the hardware has are not used).
 * Work is split across queries. NaN or Inf in either input is refused (VPKL_ERR_ARGUMENT).
 * Equivalent to vpkl_head_cpu_prepare + vpkl_head_cpu_score + vpkl_head_cpu_release. */
int vpkl_head_cpu(const vpkl_head_args *args, vpkl_precision precision, int threads, char *err, size_t err_len);

/* Enrolment: the queries converted once (rounded to bf16 or quantised to int8 for the reduced
 * precisions) and laid out for the CPU kernel, so that scoring many utterances does not
 * repeat it. The handle keeps pointing at the fp32 queries (the contexts use them): that
 * memory must stay valid and unchanged until vpkl_head_cpu_release. */
typedef struct vpkl_head_queries vpkl_head_queries;
int vpkl_head_cpu_prepare(const float *query, const int64_t query_stride[3], int64_t Q, int64_t M, int64_t D,
                          vpkl_precision precision, int threads, vpkl_head_queries **out, char *err, size_t err_len);
/* Score prepared queries: args->query, query_stride, Q, M and D are ignored (taken from q). */
int vpkl_head_cpu_score(const vpkl_head_queries *q, const vpkl_head_args *args, int threads, char *err,
                        size_t err_len);
void vpkl_head_cpu_release(vpkl_head_queries *q);

/* Which CPU kernel runs: "avx512", "avx512-bf16", "avx512-vnni", "avx2", "portable", ...
 * (a static string). Reduced precisions fall back to an emulation where the CPU lacks the
 * instructions (the same rounding of the inputs; sums within fp32 rounding; slower). The
 * environment variable VPKL_CPU_ISA = avx512 | avx2 | portable caps the instruction set. */
const char *vpkl_head_cpu_kernel(vpkl_precision precision);

/* 1 if this library was built with CUDA, else 0. */
int vpkl_head_has_cuda(void);

/* CUDA kernel: all pointers are device pointers; stream is a cudaStream_t (NULL: the default
 * stream). Precisions: VPKL_FP32 (CUDA cores) and VPKL_BF16 (tensor cores, fp32 accumulation).
 * Asynchronous with respect to the host; errors from the launch are returned. Unlike the CPU
 * kernel it does not check the inputs for NaN or Inf (that would need a device pass). */
int vpkl_head_cuda(const vpkl_head_args *args, vpkl_precision precision, void *stream, char *err, size_t err_len);

/* Convenience for tests and benchmarks: host pointers in and out; copies to the current
 * device, runs vpkl_head_cuda and copies back (synchronous). */
int vpkl_head_cuda_host(const vpkl_head_args *args, vpkl_precision precision, char *err, size_t err_len);

#ifdef __cplusplus
}
#endif

#endif /* VPKL_HEAD_H */
