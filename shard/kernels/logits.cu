// Per-row statistics of f32 logits for choosing on the device: the argmax (lowest index among
// equal maxima, as the host and torch pick), how many entries share the maximum, the
// log-softmax of the argmax and of one asked token. One launch and a 16-byte result per row
// instead of a dozen reductions; rows with NaN or infinite logits report a NaN logprob so the
// caller sends them to the host path.
#include "common.cuh"

#define LS_THREADS 1024

// Grid: one block per row of logits [rows, vocab]; asked: [rows] u32 (< vocab).
// out: [rows, 4] f32: argmax id, its logprob, the asked id's logprob, count of the maximum.
extern "C" __global__ void logits_stats_f32(const float* logits, const uint32_t* asked,
                                            float* out, int vocab) {
  __shared__ float red[33];
  __shared__ int ired[32];
  const size_t row = blockIdx.x;
  const float* x = logits + row * vocab;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  // Pass 1: maximum, lowest index holding it, and whether any entry is not finite.
  float m = -INFINITY;
  int arg = vocab;
  int bad = 0;
  for (int j = threadIdx.x; j < vocab; j += blockDim.x) {
    const float v = x[j];
    if (!isfinite(v)) bad = 1;
    if (v > m) {  // ascending j per thread: the first maximum wins
      m = v;
      arg = j;
    }
  }
  const float bm = block_max(m, red);
  int cand = (m == bm) ? arg : vocab;
  for (int o = 16; o > 0; o >>= 1) cand = min(cand, __shfl_xor_sync(0xffffffff, cand, o));
  bad = __syncthreads_or(bad);
  if (lane == 0) ired[warp] = cand;
  __syncthreads();
  if (warp == 0) {
    int c = lane < (int)(blockDim.x >> 5) ? ired[lane] : vocab;
    for (int o = 16; o > 0; o >>= 1) c = min(c, __shfl_xor_sync(0xffffffff, c, o));
    if (lane == 0) ired[0] = c;
  }
  __syncthreads();
  const int best = ired[0];
  // Pass 2: the softmax denominator and the number of entries equal to the maximum.
  float s = 0.f, ties = 0.f;
  for (int j = threadIdx.x; j < vocab; j += blockDim.x) {
    const float v = x[j];
    s += expf(v - bm);
    ties += (v == bm) ? 1.f : 0.f;
  }
  s = block_sum(s, red);
  ties = block_sum(ties, red);
  if (threadIdx.x == 0) {
    const float lse = bm + logf(s);
    const uint32_t a = asked[row];
    float* o = out + row * 4;
    o[0] = (float)(best < vocab ? best : 0);
    o[1] = bad ? NAN : x[best < vocab ? best : 0] - lse;
    o[2] = bad || a >= (uint32_t)vocab ? NAN : x[a] - lse;
    o[3] = ties;
  }
}
