// Attention of new query tokens over the paged KV cache, reading K/V through each sequence's
// slot table (no gather copy). Flash-decoding style: a sequence's keys are cut into splits of
// PA_SPLIT positions processed by separate blocks, whose partial softmax results a second
// kernel merges. GQA: query head h reads KV head h / (heads / kvh).
#include "common.cuh"

#define PA_SPLIT 512

// Grid (splits, heads, T), PA_THREADS threads, dynamic shared memory
// (d + PA_SPLIT) floats + PA_SPLIT u32.
// q: [T, heads, d]; kc/vc: [slots, kvh, d]; token_seq/token_pos: [T]; seq_off: [seqs];
// slot_table: the slot of every position of every sequence, sequence s from seq_off[s].
// With one split the result goes straight to out [T, heads * d]; otherwise each split writes
// its max and sum (part_ml) and unnormalised output (part_acc) for paged_attention_reduce.
template <typename T>
__device__ void paged_attention(const T* q, const T* kc, const T* vc, const uint32_t* token_seq,
                                const uint32_t* token_pos, const uint32_t* seq_off,
                                const uint32_t* slot_table, T* out, float* part_ml,
                                float* part_acc, float scale, int window, int heads, int kvh,
                                int d, int num_splits) {
  extern __shared__ float smem[];
  __shared__ float red[33];
  const int split = blockIdx.x, head = blockIdx.y, t = blockIdx.z;
  const int kv_head = head / (heads / kvh);
  const int pos = (int)token_pos[t];
  const int lo = window > 0 ? max(0, pos + 1 - window) : 0;
  const int start = split * PA_SPLIT;
  const int n = min(PA_SPLIT, pos + 1 - lo - start);
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
  float* qs = smem;
  float* sc = smem + d;
  uint32_t* sl = reinterpret_cast<uint32_t*>(sc + PA_SPLIT);
  const uint32_t* slots = slot_table + seq_off[token_seq[t]] + lo + start;
  for (int i = threadIdx.x; i < d; i += blockDim.x) qs[i] = to_f(q[row * d + i]) * scale;
  for (int j = threadIdx.x; j < n; j += blockDim.x) sl[j] = slots[j];
  __syncthreads();

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nwarps = blockDim.x >> 5;
  for (int j = warp; j < n; j += nwarps) {
    const T* k = kc + ((size_t)sl[j] * kvh + kv_head) * d;
    float dot = 0.f;
    for (int i = lane; i < d; i += 32) dot += qs[i] * to_f(k[i]);
    dot = warp_sum(dot);
    if (lane == 0) sc[j] = dot;
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

  for (int i = threadIdx.x; i < d; i += blockDim.x) {
    float acc = 0.f;
#pragma unroll 8
    for (int j = 0; j < n; ++j) acc += sc[j] * to_f(vc[((size_t)sl[j] * kvh + kv_head) * d + i]);
    if (num_splits == 1) {
      out[row * d + i] = from_f<T>(acc / s);
    } else {
      part_acc[part * d + i] = acc;
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
      int num_splits) {                                                                        \
    paged_attention<T>(q, kc, vc, token_seq, token_pos, seq_off, slot_table, out, part_ml,     \
                       part_acc, scale, window, heads, kvh, d, num_splits);                    \
  }                                                                                            \
  extern "C" __global__ void paged_attention_reduce_##S(const float* part_ml,                  \
                                                        const float* part_acc, T* out,         \
                                                        int num_splits, int d) {               \
    paged_attention_reduce<T>(part_ml, part_acc, out, num_splits, d);                          \
  }

PA_KERNELS(float, f32)
PA_KERNELS(__half, f16)
PA_KERNELS(__nv_bfloat16, bf16)
