// Attention of new query tokens over the paged KV cache, reading K/V through each sequence's
// slot table (no gather copy). Flash-decoding style: a sequence's keys are cut into splits
// processed by separate blocks (enough of them to fill the GPU even at batch 1), whose partial
// softmax results a second kernel merges. GQA: query head h reads KV head h / (heads / kvh).
#include "common.cuh"

// Grid (splits, heads, T), blockDim.x threads (a multiple of 32). Dynamic shared memory:
// split_len floats (scores) + split_len u32 (slots) + blockDim.x * VEC floats (partial sums).
// q: [T, heads, d]; kc/vc: [slots, kvh, d]; token_seq/token_pos: [T]; seq_off: [seqs];
// slot_table: the slot of every position of every sequence, sequence s from seq_off[s].
// d / VEC (VEC = 16 bytes of T) must be a power of two <= 32: a group of that many lanes
// reads one key or value row with 16-byte loads. With one split the result goes straight to
// out [T, heads * d]; otherwise each split writes its max and sum (part_ml) and unnormalised
// output (part_acc) for paged_attention_reduce.
template <typename T>
__device__ void paged_attention(const T* q, const T* kc, const T* vc, const uint32_t* token_seq,
                                const uint32_t* token_pos, const uint32_t* seq_off,
                                const uint32_t* slot_table, T* out, float* part_ml,
                                float* part_acc, float scale, int window, int heads, int kvh,
                                int d, int num_splits, int split_len) {
  constexpr int VEC = 16 / sizeof(T);
  extern __shared__ float smem[];
  __shared__ float red[33];
  const int split = blockIdx.x, head = blockIdx.y, t = blockIdx.z;
  const int kv_head = head / (heads / kvh);
  const int pos = (int)token_pos[t];
  const int lo = window > 0 ? max(0, pos + 1 - window) : 0;
  const int start = split * split_len;
  const int n = min(split_len, pos + 1 - lo - start);
  const size_t row = (size_t)t * heads + head;
  const size_t part = row * num_splits + split;
  if (n <= 0) {  // this split lies past the token's position: an empty partial result
    if (threadIdx.x == 0) {
      part_ml[part * 2] = -INFINITY;
      part_ml[part * 2 + 1] = 0.f;
    }
    for (int i = threadIdx.x; i < d; i += blockDim.x) part_acc[part * d + i] = 0.f;
    return;
  }
  float* sc = smem;
  uint32_t* sl = reinterpret_cast<uint32_t*>(sc + split_len);
  float* acc_s = reinterpret_cast<float*>(sl + split_len);
  const uint32_t* slots = slot_table + seq_off[token_seq[t]] + lo + start;
  for (int j = threadIdx.x; j < n; j += blockDim.x) sl[j] = slots[j];

  const int g = d / VEC;  // lanes per row
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  const int sub = lane / g, gl = lane % g, rows_per_warp = 32 / g;
  float qf[VEC];
  {
    const uint4 qv = *reinterpret_cast<const uint4*>(q + row * d + gl * VEC);
    const T* qe = reinterpret_cast<const T*>(&qv);
#pragma unroll
    for (int e = 0; e < VEC; ++e) qf[e] = to_f(qe[e]) * scale;
  }
  __syncthreads();

  // Scores: each group of g lanes takes one key per pass.
#pragma unroll 4
  for (int j0 = warp * rows_per_warp; j0 < n; j0 += nwarps * rows_per_warp) {
    const int j = j0 + sub;
    float dot = 0.f;
    if (j < n) {
      const uint4 kv = *reinterpret_cast<const uint4*>(kc + ((size_t)sl[j] * kvh + kv_head) * d +
                                                       gl * VEC);
      const T* ke = reinterpret_cast<const T*>(&kv);
#pragma unroll
      for (int e = 0; e < VEC; ++e) dot += qf[e] * to_f(ke[e]);
    }
    for (int o = g >> 1; o > 0; o >>= 1) dot += __shfl_xor_sync(0xffffffff, dot, o);
    if (gl == 0 && j < n) sc[j] = dot;
  }
  __syncthreads();
  float m = -INFINITY;
  for (int j = threadIdx.x; j < n; j += blockDim.x) m = fmaxf(m, sc[j]);
  m = block_max(m, red);
  float s = 0.f;
  for (int j = threadIdx.x; j < n; j += blockDim.x) {
    const float e = __expf(sc[j] - m);
    sc[j] = e;
    s += e;
  }
  s = block_sum(s, red);  // its barriers also publish the sc writes above

  // Values: thread (key group kg, lane gl) sums VEC dims over keys kg, kg + groups, ...
  const int groups = blockDim.x / g, kg = threadIdx.x / g;
  float acc[VEC];
#pragma unroll
  for (int e = 0; e < VEC; ++e) acc[e] = 0.f;
#pragma unroll 4
  for (int j = kg; j < n; j += groups) {
    const uint4 vv = *reinterpret_cast<const uint4*>(vc + ((size_t)sl[j] * kvh + kv_head) * d +
                                                     gl * VEC);
    const T* ve = reinterpret_cast<const T*>(&vv);
    const float p = sc[j];
#pragma unroll
    for (int e = 0; e < VEC; ++e) acc[e] += p * to_f(ve[e]);
  }
#pragma unroll
  for (int e = 0; e < VEC; ++e) acc_s[kg * d + gl * VEC + e] = acc[e];
  __syncthreads();
  for (int i = threadIdx.x; i < d; i += blockDim.x) {
    float total = 0.f;
    for (int k = 0; k < groups; ++k) total += acc_s[k * d + i];
    if (num_splits == 1) {
      out[row * d + i] = from_f<T>(total / s);
    } else {
      part_acc[part * d + i] = total;
    }
  }
  if (num_splits > 1 && threadIdx.x == 0) {
    part_ml[part * 2] = m;
    part_ml[part * 2 + 1] = s;
  }
}

// Merges the splits of one (token, head) row: grid T * heads blocks.
template <typename T>
__device__ void paged_attention_reduce(const float* part_ml, const float* part_acc, T* out,
                                       int num_splits, int d) {
  const size_t row = blockIdx.x;
  const float* ml = part_ml + row * num_splits * 2;
  float big = -INFINITY;
  for (int s = 0; s < num_splits; ++s) big = fmaxf(big, ml[s * 2]);
  float total = 0.f;
  for (int s = 0; s < num_splits; ++s) total += ml[s * 2 + 1] * __expf(ml[s * 2] - big);
  for (int i = threadIdx.x; i < d; i += blockDim.x) {
    float acc = 0.f;
    for (int s = 0; s < num_splits; ++s) {
      acc += part_acc[(row * num_splits + s) * d + i] * __expf(ml[s * 2] - big);
    }
    out[row * d + i] = from_f<T>(acc / total);
  }
}

#define PA_KERNELS(T, S)                                                                       \
  extern "C" __global__ void paged_attention_##S(                                              \
      const T* q, const T* kc, const T* vc, const uint32_t* token_seq,                         \
      const uint32_t* token_pos, const uint32_t* seq_off, const uint32_t* slot_table, T* out,  \
      float* part_ml, float* part_acc, float scale, int window, int heads, int kvh, int d,     \
      int num_splits, int split_len) {                                                         \
    paged_attention<T>(q, kc, vc, token_seq, token_pos, seq_off, slot_table, out, part_ml,     \
                       part_acc, scale, window, heads, kvh, d, num_splits, split_len);         \
  }                                                                                            \
  extern "C" __global__ void paged_attention_reduce_##S(const float* part_ml,                  \
                                                        const float* part_acc, T* out,         \
                                                        int num_splits, int d) {               \
    paged_attention_reduce<T>(part_ml, part_acc, out, num_splits, d);                          \
  }

PA_KERNELS(float, f32)
PA_KERNELS(__half, f16)
PA_KERNELS(__nv_bfloat16, bf16)
