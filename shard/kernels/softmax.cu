// Scaled, masked softmax over attention scores, for the matmul attention of long prompt
// chunks: one pass over the scores in the model dtype instead of converting to f32, scaling,
// adding a mask tensor and converting back.
#include "common.cuh"

// scores/probs: [b, heads, n, keys] rows; bounds: [b * n, 2] u32, the first and last key a
// query may attend to. One block per row; keys outside the bounds get probability 0.
template <typename T>
__device__ void masked_softmax(const T* scores, T* probs, const uint32_t* bounds, int heads,
                               int n, int keys, float scale) {
  __shared__ float red[33];
  const size_t row = blockIdx.x;
  const int q = (int)(row % n);
  const int b = (int)(row / ((size_t)heads * n));
  const int lo = (int)bounds[((size_t)b * n + q) * 2];
  const int hi = (int)bounds[((size_t)b * n + q) * 2 + 1];
  const T* x = scores + row * keys;
  T* y = probs + row * keys;
  float m = -INFINITY;
  for (int j = lo + threadIdx.x; j <= hi; j += blockDim.x) m = fmaxf(m, to_f(x[j]) * scale);
  m = block_max(m, red);
  float s = 0.f;
  for (int j = lo + threadIdx.x; j <= hi; j += blockDim.x) s += __expf(to_f(x[j]) * scale - m);
  s = block_sum(s, red);
  const float inv = s > 0.f ? 1.f / s : 0.f;
  for (int j = threadIdx.x; j < keys; j += blockDim.x) {
    const float p = (j >= lo && j <= hi) ? __expf(to_f(x[j]) * scale - m) * inv : 0.f;
    y[j] = from_f<T>(p);
  }
}

#define SOFTMAX_KERNELS(T, S)                                                                 \
  extern "C" __global__ void masked_softmax_##S(const T* scores, T* probs,                    \
                                                const uint32_t* bounds, int heads, int n,     \
                                                int keys, float scale) {                      \
    masked_softmax<T>(scores, probs, bounds, heads, n, keys, scale);                          \
  }

SOFTMAX_KERNELS(float, f32)
SOFTMAX_KERNELS(__half, f16)
SOFTMAX_KERNELS(__nv_bfloat16, bf16)
