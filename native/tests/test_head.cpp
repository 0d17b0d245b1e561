// ctest: the CPU head against a plain double-precision implementation of the equations in
// vpkl/head.h, on random inputs and the edge cases (N = 1, equal frames, Q = 1, M = 1,
// n_valid < N, strided inputs, several k and frame blocks), for every precision and for
// every instruction set this CPU has (VPKL_CPU_ISA caps it), plus the argument errors.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "vpkl/head.h"

namespace {

int failures = 0;

struct Case {
  const char *name;
  int64_t Q, M, N, D, n_valid;
  bool equal_frames = false, strided = false;
};

void reference(const std::vector<float> &I, const std::vector<float> &A, const Case &c, std::vector<double> &S,
               std::vector<double> &aud, std::vector<double> &im) {
  const int64_t Q = c.Q, M = c.M, N = c.N, D = c.D, nv = c.n_valid;
  S.assign(Q, 0), aud.assign(Q * N, 0), im.assign(Q * M, 0);
  for (int64_t q = 0; q < Q; ++q) {
    std::vector<double> mm(M * nv);
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < nv; ++n) {
        double s = 0;
        for (int64_t d = 0; d < D; ++d) s += double(I[(q * M + m) * D + d]) * A[n * D + d];
        mm[m * nv + n] = s;
      }
    std::vector<double> a(nv, -1e300), i(M, -1e300);
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < nv; ++n) a[n] = std::max(a[n], mm[m * nv + n]), i[m] = std::max(i[m], mm[m * nv + n]);
    auto norm = [](std::vector<double> &x) {
      const double lo = *std::min_element(x.begin(), x.end()), hi = *std::max_element(x.begin(), x.end());
      for (double &v : x) v = hi > lo ? (v - lo) / (hi - lo) : 1.0;
    };
    norm(a), norm(i);
    std::vector<double> ac(D, 0), ic(D, 0);
    for (int64_t n = 0; n < nv; ++n)
      for (int64_t d = 0; d < D; ++d) ac[d] += a[n] * A[n * D + d] / nv;
    for (int64_t m = 0; m < M; ++m)
      for (int64_t d = 0; d < D; ++d) ic[d] += i[m] * I[(q * M + m) * D + d] / M;
    double dot = 0, na = 0, ni = 0;
    for (int64_t d = 0; d < D; ++d) dot += ac[d] * ic[d], na += ac[d] * ac[d], ni += ic[d] * ic[d];
    S[q] = (1 + dot / (std::max(std::sqrt(na), 1e-8) * std::max(std::sqrt(ni), 1e-8))) / 2;
    for (int64_t n = 0; n < nv; ++n) aud[q * N + n] = a[n];
    for (int64_t m = 0; m < M; ++m) im[q * M + m] = i[m];
  }
}

void check(const char *what, const Case &c, const char *prec, double got, double want, double tol) {
  if (!(std::fabs(got - want) <= tol)) {
    if (failures < 20)
      std::printf("FAIL %s %s %s: got %.7f want %.7f (tol %g)\n", c.name, prec, what, got, want, tol);
    ++failures;
  }
}

void run_case(const Case &c, std::mt19937 &rng) {
  std::normal_distribution<float> g(0.f, 1.f);
  std::vector<float> I(c.Q * c.M * c.D), A(c.N * c.D);
  for (float &v : I) v = g(rng);
  for (float &v : A) v = g(rng);
  if (c.equal_frames)
    for (int64_t n = 1; n < c.N; ++n) std::copy(A.begin(), A.begin() + c.D, A.begin() + n * c.D);
  std::vector<double> S, aud, im;
  reference(I, A, c, S, aud, im);
  // strided: queries stored (Q, D, M) and audio (D, N), read through transposed strides
  std::vector<float> It(I.size()), At(A.size());
  for (int64_t q = 0; q < c.Q; ++q)
    for (int64_t m = 0; m < c.M; ++m)
      for (int64_t d = 0; d < c.D; ++d) It[(q * c.D + d) * c.M + m] = I[(q * c.M + m) * c.D + d];
  for (int64_t n = 0; n < c.N; ++n)
    for (int64_t d = 0; d < c.D; ++d) At[d * c.N + n] = A[n * c.D + d];

  const struct { vpkl_precision p; const char *name; double tol_s, tol_att; } precs[] = {
      {VPKL_FP32, "fp32", 1e-5, 1e-4}, {VPKL_BF16, "bf16", 0.02, 0.05}, {VPKL_INT8, "int8", 0.02, 0.08}};
  for (const auto &p : precs) {
    std::vector<float> s(c.Q, -1), aa(c.Q * c.N, -1), ia(c.Q * c.M, -1);
    vpkl_head_args a{};
    if (c.strided) {
      a.query = It.data(), a.query_stride[0] = c.D * c.M, a.query_stride[1] = 1, a.query_stride[2] = c.M;
      a.audio = At.data(), a.audio_stride[0] = 1, a.audio_stride[1] = c.N;
    } else {
      a.query = I.data(), a.query_stride[0] = c.M * c.D, a.query_stride[1] = c.D, a.query_stride[2] = 1;
      a.audio = A.data(), a.audio_stride[0] = c.D, a.audio_stride[1] = 1;
    }
    a.Q = c.Q, a.M = c.M, a.N = c.N, a.D = c.D, a.n_valid = c.n_valid;
    a.score = s.data(), a.score_stride = 1;
    a.aud_att = aa.data(), a.aud_att_stride[0] = c.N, a.aud_att_stride[1] = 1;
    a.im_att = ia.data(), a.im_att_stride[0] = c.M, a.im_att_stride[1] = 1;
    char err[256] = {0};
    const int rc = vpkl_head_cpu(&a, p.p, 2, err, sizeof err);
    if (rc != VPKL_OK) {
      std::printf("FAIL %s %s: rc %d (%s)\n", c.name, p.name, rc, err);
      ++failures;
      continue;
    }
    int argmax_diff = 0;
    for (int64_t q = 0; q < c.Q; ++q) {
      check("S", c, p.name, s[q], S[q], p.tol_s);
      for (int64_t n = 0; n < c.N; ++n) check("aud_att", c, p.name, aa[q * c.N + n], aud[q * c.N + n], p.tol_att);
      for (int64_t m = 0; m < c.M; ++m) check("im_att", c, p.name, ia[q * c.M + m], im[q * c.M + m], p.tol_att);
      const auto row = aa.begin() + q * c.N;
      const auto ref = aud.begin() + q * c.N;
      if (std::max_element(row, row + c.N) - row != std::max_element(ref, ref + c.N) - ref) ++argmax_diff;
    }
    if (p.p == VPKL_FP32 && argmax_diff) {
      std::printf("FAIL %s fp32: argmax frame differs for %d queries\n", c.name, argmax_diff);
      ++failures;
    }
  }
}

void expect_error(const char *what, vpkl_head_args a, int code) {
  char err[256] = {0};
  const int rc = vpkl_head_cpu(&a, VPKL_FP32, 1, err, sizeof err);
  if (rc != code) {
    std::printf("FAIL error case %s: rc %d, expected %d\n", what, rc, code);
    ++failures;
  } else {
    std::printf("ok   error case %s: %s\n", what, err);
  }
}

}  // namespace

int main() {
  std::mt19937 rng(7);
  const Case cases[] = {
      {"small", 3, 5, 7, 37, 7},
      {"N=1", 2, 4, 1, 20, 1},
      {"equal frames", 2, 4, 6, 20, 6, true},
      {"Q=1", 1, 49, 30, 64, 30},
      {"M=1", 5, 1, 30, 64, 30},
      {"n_valid<N", 4, 6, 40, 50, 23},
      {"strided", 3, 7, 33, 45, 29, false, true},
      {"blocks", 9, 49, 600, 1100, 577},
  };
  const char *isas[] = {"avx512", "avx2", "portable"};
  for (const char *isa : isas) {
    setenv("VPKL_CPU_ISA", isa, 1);
    std::printf("VPKL_CPU_ISA=%s: kernels %s, %s, %s\n", isa, vpkl_head_cpu_kernel(VPKL_FP32),
                vpkl_head_cpu_kernel(VPKL_BF16), vpkl_head_cpu_kernel(VPKL_INT8));
    for (const Case &c : cases) run_case(c, rng);
  }
  unsetenv("VPKL_CPU_ISA");

  std::vector<float> I(2 * 3 * 4, 1.f), A(5 * 4, 1.f), s(2), aa(10), ia(6);
  vpkl_head_args a{};
  a.query = I.data(), a.query_stride[0] = 12, a.query_stride[1] = 4, a.query_stride[2] = 1;
  a.audio = A.data(), a.audio_stride[0] = 4, a.audio_stride[1] = 1;
  a.Q = 2, a.M = 3, a.N = 5, a.D = 4, a.n_valid = 5;
  a.score = s.data(), a.score_stride = 1;
  a.aud_att = aa.data(), a.aud_att_stride[0] = 5, a.aud_att_stride[1] = 1;
  a.im_att = ia.data(), a.im_att_stride[0] = 3, a.im_att_stride[1] = 1;
  vpkl_head_args b = a;
  b.n_valid = 0;
  expect_error("n_valid = 0", b, VPKL_ERR_ARGUMENT);
  b = a, b.n_valid = 6;
  expect_error("n_valid > N", b, VPKL_ERR_ARGUMENT);
  b = a, b.D = 0;
  expect_error("D = 0", b, VPKL_ERR_ARGUMENT);
  b = a, b.audio = nullptr;
  expect_error("NULL audio", b, VPKL_ERR_ARGUMENT);
  A[7] = NAN;
  expect_error("NaN audio", a, VPKL_ERR_ARGUMENT);
  A[7] = 1.f, I[5] = INFINITY;
  expect_error("Inf query", a, VPKL_ERR_ARGUMENT);

  std::printf(failures ? "%d FAILURES\n" : "all passed\n", failures);
  return failures ? 1 : 0;
}
