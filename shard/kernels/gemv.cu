// Skinny matrix product for decode: y[M, N] = x[M, K] . W[N, K]^T with M <= 8, the shape of a
// linear layer at batch sizes where reading W dominates. One warp per output column, 16-byte
// vector loads of W and x, every W element used for all M rows of x, fp32 accumulation.
#include "common.cuh"

template <typename T, int M>
__device__ void gemv(const T* __restrict__ x, const T* __restrict__ w, T* __restrict__ y, int n,
                     int k, int prefetch) {
  constexpr int VEC = 16 / sizeof(T);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int col = blockIdx.x * (blockDim.x >> 5) + warp;
  if (col >= n) {
    pdl_launch_dependents();
    return;
  }
  const uint4* wr = reinterpret_cast<const uint4*>(w + (size_t)col * k);
  const int nvec = k / VEC;
  // Launched early (PDL): fetch the start of this warp's weight row (the loop's first
  // iteration, 2 KB) while the previous kernel finishes. Only then: without PDL it cost
  // 0.1 ms a batch-1 step, and whole rows of every resident warp overflow L2 (0.75 ms).
  if (prefetch)
    prefetch_l2(wr, min((size_t)k * sizeof(T), (size_t)(32 * VEC * sizeof(T) * 4)), lane, 32);
  pdl_wait();
  float acc[M];
#pragma unroll
  for (int m = 0; m < M; ++m) acc[m] = 0.f;
#pragma unroll 4
  for (int v = lane; v < nvec; v += 32) {
    const uint4 wv = __ldcs(wr + v);  // streamed once per step: do not keep it in L1
    const T* we = reinterpret_cast<const T*>(&wv);
#pragma unroll
    for (int m = 0; m < M; ++m) {
      const uint4 xv = __ldg(reinterpret_cast<const uint4*>(x + (size_t)m * k) + v);
      const T* xe = reinterpret_cast<const T*>(&xv);
#pragma unroll
      for (int e = 0; e < VEC; ++e) acc[m] += to_f(we[e]) * to_f(xe[e]);
    }
  }
  pdl_launch_dependents();
#pragma unroll
  for (int m = 0; m < M; ++m) {
    const float s = warp_sum(acc[m]);
    if (lane == 0) y[(size_t)m * n + col] = from_f<T>(s);
  }
}

// The gate/up projection of a SwiGLU MLP with its activation: y[M, n] = silu(x . Wg^T) *
// (x . Wu^T) for W = [Wg; Wu] ([2n, K]). One warp per output column reads both of its rows,
// so the product never goes through memory and the separate SiLU-mul kernel (and the gap
// before it) is gone from a decode step.
template <typename T, int M>
__device__ void gemv_silu_gated(const T* __restrict__ x, const T* __restrict__ w,
                                T* __restrict__ y, int n, int k, int prefetch) {
  constexpr int VEC = 16 / sizeof(T);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int col = blockIdx.x * (blockDim.x >> 5) + warp;
  if (col >= n) {
    pdl_launch_dependents();
    return;
  }
  const uint4* wg = reinterpret_cast<const uint4*>(w + (size_t)col * k);
  const uint4* wu = reinterpret_cast<const uint4*>(w + ((size_t)n + col) * k);
  const int nvec = k / VEC;
  if (prefetch) {
    const size_t head = min((size_t)k * sizeof(T), (size_t)(32 * VEC * sizeof(T) * 2));
    prefetch_l2(wg, head, lane, 32);
    prefetch_l2(wu, head, lane, 32);
  }
  pdl_wait();
  float ag[M], au[M];
#pragma unroll
  for (int m = 0; m < M; ++m) ag[m] = au[m] = 0.f;
#pragma unroll 4
  for (int v = lane; v < nvec; v += 32) {
    const uint4 gv = __ldcs(wg + v);
    const uint4 uv = __ldcs(wu + v);
    const T* ge = reinterpret_cast<const T*>(&gv);
    const T* ue = reinterpret_cast<const T*>(&uv);
#pragma unroll
    for (int m = 0; m < M; ++m) {
      const uint4 xv = __ldg(reinterpret_cast<const uint4*>(x + (size_t)m * k) + v);
      const T* xe = reinterpret_cast<const T*>(&xv);
#pragma unroll
      for (int e = 0; e < VEC; ++e) {
        const float xf = to_f(xe[e]);
        ag[m] += to_f(ge[e]) * xf;
        au[m] += to_f(ue[e]) * xf;
      }
    }
  }
  pdl_launch_dependents();
#pragma unroll
  for (int m = 0; m < M; ++m) {
    const float g = warp_sum(ag[m]);
    const float u = warp_sum(au[m]);
    if (lane == 0) y[(size_t)m * n + col] = from_f<T>(g / (1.f + __expf(-g)) * u);
  }
}

#define GEMV_M(T, S, M)                                                                        \
  extern "C" __global__ void gemv_##S##_m##M(const T* x, const T* w, T* y, int n, int k,       \
                                            int prefetch) {                                   \
    gemv<T, M>(x, w, y, n, k, prefetch);                                                       \
  }                                                                                            \
  extern "C" __global__ void gemv_silu_gated_##S##_m##M(const T* x, const T* w, T* y, int n,   \
                                                       int k, int prefetch) {                 \
    gemv_silu_gated<T, M>(x, w, y, n, k, prefetch);                                            \
  }
#define GEMV(T, S)                                                                             \
  GEMV_M(T, S, 1) GEMV_M(T, S, 2) GEMV_M(T, S, 3) GEMV_M(T, S, 4) GEMV_M(T, S, 5)              \
  GEMV_M(T, S, 6) GEMV_M(T, S, 7) GEMV_M(T, S, 8)

GEMV(float, f32)
GEMV(__half, f16)
GEMV(__nv_bfloat16, bf16)
