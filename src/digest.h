/* A keyed 64-bit digest of a byte buffer: how the inference pass tells that a layer's
 * weights changed since it prepared them (fastconv/ops/conv/prepared.py), reading the
 * weights once instead of comparing them with a kept copy (two reads, and a second
 * copy of every weight held).
 *
 * Not a cryptographic hash.  What it must do: a change a program makes to the bytes
 * (one element, sign flips, a permutation of rows, a scaling) changes the digest but
 * for a negligible chance, whatever the change.  The key, drawn at random per process
 * (fc_digest_set_key) and never leaving it, is what makes that hold: no fixed change
 * collides for more than a sliver of keys.
 *
 * Layout: the buffer is read in stripes of 64 bytes (eight 64-bit words, one per lane)
 * and blocks of FC_DIGEST_STRIPES stripes.  Each word w is added into two accumulators
 * of its lane, each time as the 32 x 32 -> 64-bit product of the halves of w xor a key
 * word (the two key words independent, both chosen by the stripe's place in its block,
 * so equal words at different places add different amounts), the first plus w with its
 * halves swapped, the second plus w (so a half that meets a zero in a product still
 * counts).  One such product is NH hashing (as in UMAC): two messages collide with a
 * chance near 2^-32 over the key; the two independent ones near 2^-64.  A change of one
 * word never cancels in its lane (the sum stays under 2^64).  After each block every
 * accumulator is scrambled (shift-xor, key, odd multiply: a bijection), so the blocks'
 * order counts.  The tail (under 64 bytes) is zero-padded and the length enters the
 * final mix, so a buffer and the same buffer with zeros appended differ.  Buffers
 * over FC_DIGEST_CHUNK are digested chunk by chunk and the chunks' digests folded in
 * order (on several threads; the same digest on any number).
 *
 * The blocks run in portable C or, where the CPU has it, AVX2 (the same arithmetic, four
 * lanes a vector: one core then reads at about the speed of memory); tests/test_digest.py
 * checks both against a NumPy transcription of this description. */
#ifndef FASTCONV_DIGEST_H
#define FASTCONV_DIGEST_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "conv/ukernels/common.h"   /* FC_X86_DISPATCH, FC_TARGET_AVX2 */
#include "omp_shim.h"

#define FC_DIGEST_LANES 8
#define FC_DIGEST_ACC (2 * FC_DIGEST_LANES)   /* two accumulators per lane */
#define FC_DIGEST_STRIPES 16
/* The key's words: the stripes' (a stripe at s in its block takes s .. s + 15), the
 * scramble's, the accumulators' start, the length's. */
#define FC_DIGEST_KEY_SCRAMBLE (FC_DIGEST_STRIPES + FC_DIGEST_ACC - 1)
#define FC_DIGEST_KEY_INIT (FC_DIGEST_KEY_SCRAMBLE + FC_DIGEST_ACC)
#define FC_DIGEST_KEY_LENGTH (FC_DIGEST_KEY_INIT + FC_DIGEST_ACC)
#define FC_DIGEST_KEYS (FC_DIGEST_KEY_LENGTH + 1)

static uint64_t fc_digest_key[FC_DIGEST_KEYS];

static inline uint64_t fc_digest_fmix(uint64_t z)
{
    /* SplitMix64's finaliser (shift-xor and odd multiplies): every input bit reaches
     * every output bit. */
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline void fc_digest_stripe(uint64_t *acc, const unsigned char *p,
                                    const uint64_t *key)
{
    uint64_t w[FC_DIGEST_LANES];
    memcpy(w, p, sizeof w);
    for (int l = 0; l < FC_DIGEST_LANES; l++) {
        uint64_t v = w[l] ^ key[l], u = w[l] ^ key[l + FC_DIGEST_LANES];
        acc[l] += (uint64_t)(uint32_t)v * (v >> 32) + ((w[l] << 32) | (w[l] >> 32));
        acc[l + FC_DIGEST_LANES] += (uint64_t)(uint32_t)u * (u >> 32) + w[l];
    }
}

static inline void fc_digest_scramble(uint64_t *acc, const uint64_t *key)
{
    for (int l = 0; l < FC_DIGEST_ACC; l++) {
        uint64_t a = acc[l];
        a ^= a >> 47;
        a ^= key[l];
        acc[l] = a * 0x9e3779b1ULL;
    }
}

/* The whole blocks, in portable C (the reference the vector versions follow). */
typedef void (*fc_digest_blocks_fn)(uint64_t *acc, const unsigned char *p, size_t blocks,
                                    const uint64_t *key);

static void fc_digest_blocks_c(uint64_t *acc, const unsigned char *p, size_t blocks,
                               const uint64_t *key)
{
    for (size_t b = 0; b < blocks; b++, p += (size_t)64 * FC_DIGEST_STRIPES) {
        for (int s = 0; s < FC_DIGEST_STRIPES; s++)
            fc_digest_stripe(acc, p + (size_t)64 * s, key + s);
        fc_digest_scramble(acc, key + FC_DIGEST_KEY_SCRAMBLE);
    }
}

#if FC_X86_DISPATCH
/* The same arithmetic on AVX2, four lanes per vector: the product of the halves is
 * _mm256_mul_epu32 of v and v >> 32, the swap a 32-bit shuffle, and the scramble's
 * multiply by a 32-bit constant two such products. */
FC_TARGET_AVX2
static void fc_digest_blocks_avx2(uint64_t *acc, const unsigned char *p, size_t blocks,
                                  const uint64_t *key)
{
    __m256i a[4], sk[4];
    const __m256i odd = _mm256_set1_epi64x(0x9e3779b1LL);
    for (int j = 0; j < 4; j++) {
        a[j] = _mm256_loadu_si256((const __m256i *)(acc + 4 * j));
        sk[j] = _mm256_loadu_si256((const __m256i *)(key + FC_DIGEST_KEY_SCRAMBLE + 4 * j));
    }
    for (size_t b = 0; b < blocks; b++, p += (size_t)64 * FC_DIGEST_STRIPES) {
        for (int s = 0; s < FC_DIGEST_STRIPES; s++) {
            const unsigned char *q = p + (size_t)64 * s;
            for (int h = 0; h < 2; h++) {   /* lanes 4h .. 4h + 3 */
                __m256i d = _mm256_loadu_si256((const __m256i *)(q + 32 * h));
                __m256i v = _mm256_xor_si256(
                    d, _mm256_loadu_si256((const __m256i *)(key + s + 4 * h)));
                __m256i u = _mm256_xor_si256(
                    d, _mm256_loadu_si256((const __m256i *)(key + s + 4 * h +
                                                             FC_DIGEST_LANES)));
                __m256i pv = _mm256_mul_epu32(v, _mm256_srli_epi64(v, 32));
                __m256i pu = _mm256_mul_epu32(u, _mm256_srli_epi64(u, 32));
                __m256i sw = _mm256_shuffle_epi32(d, _MM_SHUFFLE(2, 3, 0, 1));
                a[h] = _mm256_add_epi64(a[h], _mm256_add_epi64(pv, sw));
                a[h + 2] = _mm256_add_epi64(a[h + 2], _mm256_add_epi64(pu, d));
            }
        }
        for (int j = 0; j < 4; j++) {
            __m256i x = _mm256_xor_si256(a[j], _mm256_srli_epi64(a[j], 47));
            x = _mm256_xor_si256(x, sk[j]);
            __m256i lo = _mm256_mul_epu32(x, odd);
            __m256i hi = _mm256_mul_epu32(_mm256_srli_epi64(x, 32), odd);
            a[j] = _mm256_add_epi64(lo, _mm256_slli_epi64(hi, 32));
        }
    }
    for (int j = 0; j < 4; j++)
        _mm256_storeu_si256((__m256i *)(acc + 4 * j), a[j]);
}
#endif

/* The version this CPU runs (portable: the C one); all give the same digest. */
static fc_digest_blocks_fn fc_digest_pick(int portable)
{
#if FC_X86_DISPATCH
    if (!portable && __builtin_cpu_supports("avx2"))
        return fc_digest_blocks_avx2;
#endif
    (void)portable;
    return fc_digest_blocks_c;
}

/* The digest of n bytes at buf under key (FC_DIGEST_KEYS words), its blocks run by
 * blocks_fn. */
static uint64_t fc_digest_with(const uint64_t *key, fc_digest_blocks_fn blocks_fn,
                               const void *buf, size_t n)
{
    const unsigned char *p = (const unsigned char *)buf;
    const size_t block = (size_t)64 * FC_DIGEST_STRIPES;
    uint64_t acc[FC_DIGEST_ACC];
    for (int l = 0; l < FC_DIGEST_ACC; l++)
        acc[l] = key[FC_DIGEST_KEY_INIT + l];
    size_t i = n / block * block;
    blocks_fn(acc, p, n / block, key);
    int s = 0;
    for (; i + 64 <= n; i += 64, s++)
        fc_digest_stripe(acc, p + i, key + s);
    if (i < n) {
        unsigned char last[64] = {0};
        memcpy(last, p + i, n - i);
        fc_digest_stripe(acc, last, key + s);
    }
    uint64_t h = fc_digest_fmix((uint64_t)n ^ key[FC_DIGEST_KEY_LENGTH]);
    for (int l = 0; l < FC_DIGEST_ACC; l++)
        h = fc_digest_fmix(h ^ acc[l]) + acc[l];
    return h;
}

/* Buffers over one chunk are digested chunk by chunk, and the chunks' digests folded in
 * order: the digest depends on the chunk size, never on the thread count.  From
 * FC_DIGEST_PARALLEL_BYTES the chunks run in parallel (below, waking a thread costs
 * about what it saves). */
#define FC_DIGEST_CHUNK ((size_t)64 * 1024)
#define FC_DIGEST_PARALLEL_BYTES ((size_t)128 * 1024)

static uint64_t fc_digest_chunked(const uint64_t *key, fc_digest_blocks_fn blocks_fn,
                                  const void *buf, size_t n, int threads)
{
    const unsigned char *p = (const unsigned char *)buf;
    if (n <= FC_DIGEST_CHUNK)
        return fc_digest_with(key, blocks_fn, p, n);
    ptrdiff_t m = (ptrdiff_t)((n + FC_DIGEST_CHUNK - 1) / FC_DIGEST_CHUNK), i;
    uint64_t local[64];   /* (the chunks' digests of buffers up to 4 MiB: no malloc) */
    uint64_t *d = m <= 64 ? local : (uint64_t *)malloc((size_t)m * sizeof *d);
    uint64_t h = fc_digest_fmix((uint64_t)n ^ key[FC_DIGEST_KEY_LENGTH]);
    if (d == NULL) {   /* (no memory for the list: the same digest, serially) */
        for (i = 0; i < m; i++) {
            size_t at = (size_t)i * FC_DIGEST_CHUNK, len = n - at;
            uint64_t c = fc_digest_with(key, blocks_fn, p + at,
                                        len < FC_DIGEST_CHUNK ? len : FC_DIGEST_CHUNK);
            h = fc_digest_fmix(h ^ c) + c;
        }
        return h;
    }
    if (threads > m)
        threads = (int)m;
    if (n < FC_DIGEST_PARALLEL_BYTES)
        threads = 1;
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
    for (i = 0; i < m; i++) {
        size_t at = (size_t)i * FC_DIGEST_CHUNK, len = n - at;
        d[i] = fc_digest_with(key, blocks_fn, p + at,
                              len < FC_DIGEST_CHUNK ? len : FC_DIGEST_CHUNK);
    }
    for (i = 0; i < m; i++)
        h = fc_digest_fmix(h ^ d[i]) + d[i];
    if (d != local)
        free(d);
    return h;
}

static fc_digest_blocks_fn fc_digest_blocks = fc_digest_blocks_c;

/* Sets the process's key from FC_DIGEST_KEYS * 8 bytes (random, drawn once) and picks
 * the blocks' version for this CPU. */
static void fc_digest_set_key(const unsigned char *bytes, int portable)
{
    memcpy(fc_digest_key, bytes, sizeof fc_digest_key);
    fc_digest_blocks = fc_digest_pick(portable);
}

/* The digest of n bytes at buf under the process's key, on up to `threads` threads. */
static uint64_t fc_digest(const void *buf, size_t n, int threads)
{
    return fc_digest_chunked(fc_digest_key, fc_digest_blocks, buf, n, threads);
}

#endif
