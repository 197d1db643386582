"""C source of the native netlist backend's driver: encode, decode and the tile loop, for AVX-512
or AVX2.

The gates are the assembly of :mod:`tvm_ops.netlist_asm` (``lgn_gates``); this C is the same for
every net of one shape (input layout and dtype, classes, outputs per class), and small, so the system
compiler builds it in well under a second. Entry point::

    void lgn_run(const void *x, int64_t n, float *out, uint64_t *scratch, const void *cut,
                 const uint64_t *enable, float tau);

``x``: n raw samples (uint8, or float32 for the float kernel), ``out``: (n, classes) float32
``count / tau``; ``scratch``: :func:`scratch_words` uint64, 64-byte aligned. ``lgn_run_packed(bits,
words, n, out, scratch, tau)`` takes pre-packed input bits instead (uint64 (inputs, words), as
``lgn_nas.netlist.evaluate.pack_bits`` gives them) and skips the encode. Per tile of 512 samples:

1. encode: per sample, channel-threshold and block of 64 positions one 64-byte compare gives a 64-bit
   mask (``x >= cut`` on uint8, ``x > thr`` on float32, 16 floats a compare); per block the masks of
   the tile's eight 64-sample groups are transposed at once (six swap stages on 512-bit rows), which
   gives the input slots' rows; four blocks at a time, so that their masks stay in L1;
2. ``lgn_gates(act, next tile's input, planes)``: the gates and the head's counters (bit planes);
3. decode: the planes into per-sample counts, and ``count / tau`` from a table made per call (the
   same float32 division). A last partial tile runs on a zero-padded copy.

``isa="avx2"`` (compiled with ``-mavx2``) is the same algorithm and memory layout on 256-bit
vectors: a 64-position mask is two byte compares (``max(x, cut) == x`` and ``movemask``) or eight
float compares, a partial block is compared on a zero-padded copy, the transpose runs on each
256-bit half of the rows in turn, and the decode spreads 32 plane bits to bytes with a byte
shuffle; ``lgn_gates`` does both halves of the rows itself (see :mod:`tvm_ops.netlist_asm`).
"""
from __future__ import annotations

__all__ = ["driver_source", "scratch_words", "num_planes", "TILE_SAMPLES"]

TILE_SAMPLES = 512


def num_planes(group_size: int) -> int:
    """Bits of a class count (0..group_size)."""
    return max(1, int(group_size).bit_length())


def _blocks(spatial: int) -> int:
    return -(-spatial // 64)


def scratch_words(*, num_slots: int, channels: int, thresholds_per_channel: int, spatial: int,
                  input_bytes: int, num_classes: int, group_size: int) -> int:
    """uint64 words of scratch: the slots' rows, the encode masks, a tile's scores, the head's bit
    planes, a padded tile of input."""
    masks = 4 * 520  # GROUP blocks of MSTRIDE words
    pad = -(-TILE_SAMPLES * channels * spatial * input_bytes // 64) * 8
    scores = num_classes * TILE_SAMPLES // 4 + -(-(group_size + 1) // 16) * 8  # count bytes, score table
    planes = (num_classes + 1) * num_planes(group_size) * 8
    return num_slots * 8 + masks + scores + planes + pad


def driver_source(*, num_slots: int, channels: int, thresholds_per_channel: int, spatial: int,
                  input_dtype: str, num_classes: int, group_size: int, isa: str = "avx512") -> str:
    """The driver's C for one shape and ``isa`` ("avx512" or "avx2"; see the module docstring)."""
    if input_dtype not in ("uint8", "float32"):
        raise ValueError(f"input_dtype = {input_dtype!r}, expected 'uint8' or 'float32'")
    if isa not in _BODIES:
        raise ValueError(f"isa = {isa!r}, expected one of {', '.join(map(repr, _BODIES))}")
    planes = num_planes(group_size)
    if planes > 16:
        raise ValueError(f"group size {group_size} is over 65,535 outputs per class, the most the native decode counts")
    full, tail = spatial // 64, spatial % 64
    u8 = input_dtype == "uint8"
    defines = {
        "NSLOT": num_slots, "CH": channels, "TH": thresholds_per_channel, "HW": spatial,
        "CT": channels * thresholds_per_channel, "NBLK": _blocks(spatial), "NFULL": full, "TAIL": tail,
        "D": channels * spatial, "NCLS": num_classes, "K": group_size, "NP": planes, "TILE": TILE_SAMPLES,
        "NI": channels * thresholds_per_channel * spatial, "U8": int(u8), "SCORES": -(-(group_size + 1) // 16) * 16,
    }
    head = "\n".join(f"#define {k} {v}" for k, v in defines.items())
    return head + "\n" + _BODIES[isa]


_BODY = r"""
#include <stdint.h>
#include <string.h>
#include <immintrin.h>

typedef uint64_t v8 __attribute__((vector_size(64)));
/* words between two blocks' masks: 4 KB plus a line, so that a block's mask stores and the next
   input loads do not alias at 4 KB */
#define MSTRIDE 520
#if U8
typedef uint8_t xin;
#else
typedef float xin;
#endif

void lgn_gates(uint64_t *act, const void *next, uint64_t *planes);

/* 64-bit mask of positions p < lanes (lanes <= 64) of block `blk` of one channel row: bit p set where
   x[p] >= cut (uint8) or x[p] > thr (float32). */
static inline uint64_t block_mask(const xin *row, int lanes, const void *cutp, int ct) {
#if U8
    __m512i c = _mm512_set1_epi8((char)((const uint8_t *)cutp)[ct]);
    __mmask64 live = lanes >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << lanes) - 1);
    __m512i v = _mm512_maskz_loadu_epi8(live, row);
    return (uint64_t)_mm512_mask_cmpge_epu8_mask(live, v, c);
#else
    __m512 t = _mm512_set1_ps(((const float *)cutp)[ct]);
    uint64_t m = 0;
    for (int q = 0; q < 4; q++) {
        int left = lanes - 16 * q;
        if (left <= 0) break;
        __mmask16 live = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);
        __m512 v = _mm512_maskz_loadu_ps(live, row + 16 * q);
        m |= (uint64_t)_mm512_mask_cmp_ps_mask(live, v, t, _CMP_GT_OQ) << (16 * q);
    }
    return m;
#endif
}

#define SWAP(lo, hi, j, m) do { \
    __m512i t_ = _mm512_and_si512(_mm512_xor_si512(_mm512_srli_epi64(lo, j), hi), m); \
    lo = _mm512_xor_si512(lo, _mm512_slli_epi64(t_, j)); hi = _mm512_xor_si512(hi, t_); } while (0)

/* Blocks are done GROUP at a time, so that their masks (GROUP x 4 KB) stay in the L1 cache between
   the compares and the transpose; each pass reads its own 64-position columns of the tile's rows.
   (A software prefetch of the rows 8 or 16 samples ahead measured no different: removed.) */
#define GROUP 4

static void encode(const xin *x, v8 *act, uint64_t *masks, const void *cut, const uint64_t *enable) {
    const __m512i m32 = _mm512_set1_epi64(0x00000000FFFFFFFFll), m16 = _mm512_set1_epi64(0x0000FFFF0000FFFFll),
                  m8 = _mm512_set1_epi64(0x00FF00FF00FF00FFll), m4 = _mm512_set1_epi64(0x0F0F0F0F0F0F0F0Fll),
                  m2 = _mm512_set1_epi64(0x3333333333333333ll), m1 = _mm512_set1_epi64(0x5555555555555555ll);
    for (int ct = 0; ct < CT; ct++)
    for (int b0 = 0; b0 < NBLK; b0 += GROUP) {
    int nb = NBLK - b0 < GROUP ? NBLK - b0 : GROUP;
    const __m512i en = _mm512_set1_epi64((long long)enable[ct]);  /* 0 where a threshold is never passed */
#if U8
    const __m512i vcut = _mm512_set1_epi8((char)((const uint8_t *)cut)[ct]);
#endif
#if U8
    if (b0 + GROUP <= NFULL) {  /* a group of full blocks: four compares a sample, no branches */
        for (int s = 0; s < TILE; s++) {
            const uint8_t *ch = x + (int64_t)s * D + (ct / TH) * HW + b0 * 64;
            uint64_t *m = masks + (s & 63) * 8 + (s >> 6);
            _store_mask64((__mmask64 *)&m[0], _mm512_cmpge_epu8_mask(_mm512_loadu_si512(ch), vcut));
            _store_mask64((__mmask64 *)&m[MSTRIDE], _mm512_cmpge_epu8_mask(_mm512_loadu_si512(ch + 64), vcut));
            _store_mask64((__mmask64 *)&m[2 * MSTRIDE], _mm512_cmpge_epu8_mask(_mm512_loadu_si512(ch + 128), vcut));
            _store_mask64((__mmask64 *)&m[3 * MSTRIDE], _mm512_cmpge_epu8_mask(_mm512_loadu_si512(ch + 192), vcut));
        }
    } else
#endif
    for (int s = 0; s < TILE; s++) {
        const xin *ch = x + (int64_t)s * D + (ct / TH) * HW + b0 * 64;
        uint64_t *m = masks + (s & 63) * 8 + (s >> 6);
        for (int bi = 0; bi < nb; bi++)
            m[bi * MSTRIDE] = block_mask(ch + bi * 64, b0 + bi < NFULL ? 64 : TAIL, cut, ct);
    }
    for (int bi = 0; bi < nb; bi++) {
        int cb = ct * NBLK + b0 + bi;
        __m512i *rows = (__m512i *)(masks + bi * MSTRIDE);
        /* stages 32, 16, 8 on the row sets r, r + 8, ..., r + 56 */
        for (int r = 0; r < 8; r++) {
            __m512i v0 = rows[r], v1 = rows[r + 8], v2 = rows[r + 16], v3 = rows[r + 24],
                    v4 = rows[r + 32], v5 = rows[r + 40], v6 = rows[r + 48], v7 = rows[r + 56];
            SWAP(v0, v4, 32, m32); SWAP(v1, v5, 32, m32); SWAP(v2, v6, 32, m32); SWAP(v3, v7, 32, m32);
            SWAP(v0, v2, 16, m16); SWAP(v1, v3, 16, m16); SWAP(v4, v6, 16, m16); SWAP(v5, v7, 16, m16);
            SWAP(v0, v1, 8, m8); SWAP(v2, v3, 8, m8); SWAP(v4, v5, 8, m8); SWAP(v6, v7, 8, m8);
            rows[r] = v0; rows[r + 8] = v1; rows[r + 16] = v2; rows[r + 24] = v3;
            rows[r + 32] = v4; rows[r + 40] = v5; rows[r + 48] = v6; rows[r + 56] = v7;
        }
        int b = cb % NBLK;
        int lanes = b < NFULL ? 64 : TAIL;
        __m512i *dst = (__m512i *)(act + 1 + ct * HW + b * 64);
        /* stages 4, 2, 1 on the rows 8g .. 8g + 7: then row p is input position p's slot row */
        for (int g = 0; g < 8 && g * 8 < lanes; g++) {
            __m512i *q = rows + 8 * g;
            __m512i v0 = q[0], v1 = q[1], v2 = q[2], v3 = q[3], v4 = q[4], v5 = q[5], v6 = q[6], v7 = q[7];
            SWAP(v0, v4, 4, m4); SWAP(v1, v5, 4, m4); SWAP(v2, v6, 4, m4); SWAP(v3, v7, 4, m4);
            SWAP(v0, v2, 2, m2); SWAP(v1, v3, 2, m2); SWAP(v4, v6, 2, m2); SWAP(v5, v7, 2, m2);
            SWAP(v0, v1, 1, m1); SWAP(v2, v3, 1, m1); SWAP(v4, v5, 1, m1); SWAP(v6, v7, 1, m1);
            __m512i out[8] = {v0, v1, v2, v3, v4, v5, v6, v7};
            int n = lanes - 8 * g < 8 ? lanes - 8 * g : 8;
            for (int i = 0; i < n; i++) _mm512_store_si512(dst + 8 * g + i, _mm512_and_si512(out[i], en));
        }
    }
    }
}

/* The class counts from the bit planes that lgn_gates left: per 64-sample word, plane q's bits as
   bytes (vpmovm2b) select bit q of the count (low and high byte apart); then, sample-major, the
   score of each count from a table of count / tau (the same float division, done once per count). */
static void decode(const uint64_t *planes, float *out, const float *score_of, int valid, uint8_t *lo_hi) {
    for (int c = 0; c < NCLS; c++) {
        for (int g = 0; g * 64 < valid; g++) {
            __m512i lo = _mm512_setzero_si512(), hi = _mm512_setzero_si512();
            for (int q = 0; q < NP; q++) {
                __m512i bytes = _mm512_movm_epi8((__mmask64)planes[(c * NP + q) * 8 + g]);
                if (q < 8) lo = _mm512_ternarylogic_epi64(lo, bytes, _mm512_set1_epi8((char)(1 << q)), 0xF8);
                else hi = _mm512_ternarylogic_epi64(hi, bytes, _mm512_set1_epi8((char)(1 << (q - 8))), 0xF8);
            }
            _mm512_store_si512(lo_hi + (2 * c) * TILE + g * 64, lo);
            _mm512_store_si512(lo_hi + (2 * c + 1) * TILE + g * 64, hi);
        }
    }
    for (int s = 0; s < valid; s++)
        for (int c = 0; c < NCLS; c++)
            out[(int64_t)s * NCLS + c] = score_of[lo_hi[2 * c * TILE + s] | (lo_hi[(2 * c + 1) * TILE + s] << 8)];
}

/* count / tau for every count 0..K, 16 at a time */
static void score_table(float *score_of, float tau) {
    for (int i = 0; i <= K; i += 16)
        _mm512_store_ps(score_of + i, _mm512_div_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(_mm512_set1_epi32(i),
            _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0))), _mm512_set1_ps(tau)));
}

/* The tile's slot rows from pre-packed input: eight words of each input from word w0, zeros past the end. */
static void load_rows(v8 *act, const uint64_t *bits, int64_t words, int64_t w0) {
    int64_t left = words - w0;
    __mmask8 live = left >= 8 ? (__mmask8)0xFF : (__mmask8)((1u << left) - 1);
    for (int i = 0; i < NI; i++)
        _mm512_store_si512(act + 1 + i, _mm512_maskz_loadu_epi64(live, bits + (int64_t)i * words + w0));
}
"""


_BODY_AVX2 = r"""
#include <stdint.h>
#include <string.h>
#include <immintrin.h>

typedef uint64_t v8 __attribute__((vector_size(64)));
typedef uint64_t v4 __attribute__((vector_size(32)));  /* one half (256 samples) of a row */
#define SPLAT4(x) ((v4){(x), (x), (x), (x)})
/* words between two blocks' masks, as in the AVX-512 driver */
#define MSTRIDE 520
#if U8
typedef uint8_t xin;
#else
typedef float xin;
#endif

void lgn_gates(uint64_t *act, const void *next, uint64_t *planes);

#if U8
/* 32-bit mask of x[p] >= cut for the 32 bytes at p (unsigned: max(x, cut) == x) */
static inline uint32_t ge_mask32(const uint8_t *p, __m256i cut) {
    __m256i v = _mm256_loadu_si256((const __m256i *)p);
    return (uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(_mm256_max_epu8(v, cut), v));
}
#endif

/* 64-bit mask of positions p < lanes (lanes <= 64) of one channel row's block: bit p set where
   x[p] >= cut (uint8) or x[p] > thr (float32). A partial block is read from a zero-padded copy. */
static inline uint64_t block_mask(const xin *row, int lanes, const void *cutp, int ct) {
    xin copy[64] __attribute__((aligned(32)));
    uint64_t live = ~(uint64_t)0;
    if (lanes < 64) {
        memset(copy, 0, sizeof copy);
        memcpy(copy, row, sizeof(xin) * lanes);
        row = copy;
        live = ((uint64_t)1 << lanes) - 1;
    }
#if U8
    __m256i c = _mm256_set1_epi8((char)((const uint8_t *)cutp)[ct]);
    return (ge_mask32(row, c) | (uint64_t)ge_mask32(row + 32, c) << 32) & live;
#else
    __m256 t = _mm256_set1_ps(((const float *)cutp)[ct]);
    uint64_t m = 0;
    for (int q = 0; q < 8; q++) {
        __m256 v = _mm256_loadu_ps(row + 8 * q);
        m |= (uint64_t)(uint32_t)_mm256_movemask_ps(_mm256_cmp_ps(v, t, _CMP_GT_OQ)) << (8 * q);
    }
    return m & live;
#endif
}

#define SWAP(lo, hi, j, m) do { v4 t_ = ((lo >> (j)) ^ hi) & (m); lo ^= t_ << (j); hi ^= t_; } while (0)

/* Blocks GROUP at a time, as in the AVX-512 driver; the transpose runs on each half of the 512-bit
   rows in turn (its shifts stay within 64-bit words, so the halves are independent), which keeps
   its eight rows and six masks in the sixteen ymm registers. */
#define GROUP 4

static void encode(const xin *x, v8 *act, uint64_t *masks, const void *cut, const uint64_t *enable) {
    const v4 m32 = SPLAT4(0x00000000FFFFFFFFull), m16 = SPLAT4(0x0000FFFF0000FFFFull),
             m8 = SPLAT4(0x00FF00FF00FF00FFull), m4 = SPLAT4(0x0F0F0F0F0F0F0F0Full),
             m2 = SPLAT4(0x3333333333333333ull), m1 = SPLAT4(0x5555555555555555ull);
    for (int ct = 0; ct < CT; ct++)
    for (int b0 = 0; b0 < NBLK; b0 += GROUP) {
    int nb = NBLK - b0 < GROUP ? NBLK - b0 : GROUP;
    const v4 en = SPLAT4(enable[ct]);  /* 0 where a threshold is never passed */
#if U8
    const __m256i vcut = _mm256_set1_epi8((char)((const uint8_t *)cut)[ct]);
    if (b0 + GROUP <= NFULL) {  /* a group of full blocks: eight compares a sample, no branches */
        for (int s = 0; s < TILE; s++) {
            const uint8_t *ch = x + (int64_t)s * D + (ct / TH) * HW + b0 * 64;
            uint64_t *m = masks + (s & 63) * 8 + (s >> 6);
            for (int bi = 0; bi < GROUP; bi++)
                m[bi * MSTRIDE] = ge_mask32(ch + 64 * bi, vcut) | (uint64_t)ge_mask32(ch + 64 * bi + 32, vcut) << 32;
        }
    } else
#endif
    for (int s = 0; s < TILE; s++) {
        const xin *ch = x + (int64_t)s * D + (ct / TH) * HW + b0 * 64;
        uint64_t *m = masks + (s & 63) * 8 + (s >> 6);
        for (int bi = 0; bi < nb; bi++)
            m[bi * MSTRIDE] = block_mask(ch + bi * 64, b0 + bi < NFULL ? 64 : TAIL, cut, ct);
    }
    for (int bi = 0; bi < nb; bi++) {
        int b = b0 + bi;
        int lanes = b < NFULL ? 64 : TAIL;
        for (int h = 0; h < 2; h++) {
            v4 *rows = (v4 *)(masks + bi * MSTRIDE) + h;  /* row r's half h: rows[2 * r] */
            /* stages 32, 16, 8 on the row sets r, r + 8, ..., r + 56 */
            for (int r = 0; r < 8; r++) {
                v4 v0 = rows[2 * r], v1 = rows[2 * (r + 8)], v2 = rows[2 * (r + 16)], v3 = rows[2 * (r + 24)],
                   v4_ = rows[2 * (r + 32)], v5 = rows[2 * (r + 40)], v6 = rows[2 * (r + 48)], v7 = rows[2 * (r + 56)];
                SWAP(v0, v4_, 32, m32); SWAP(v1, v5, 32, m32); SWAP(v2, v6, 32, m32); SWAP(v3, v7, 32, m32);
                SWAP(v0, v2, 16, m16); SWAP(v1, v3, 16, m16); SWAP(v4_, v6, 16, m16); SWAP(v5, v7, 16, m16);
                SWAP(v0, v1, 8, m8); SWAP(v2, v3, 8, m8); SWAP(v4_, v5, 8, m8); SWAP(v6, v7, 8, m8);
                rows[2 * r] = v0; rows[2 * (r + 8)] = v1; rows[2 * (r + 16)] = v2; rows[2 * (r + 24)] = v3;
                rows[2 * (r + 32)] = v4_; rows[2 * (r + 40)] = v5; rows[2 * (r + 48)] = v6; rows[2 * (r + 56)] = v7;
            }
            v4 *dst = (v4 *)(act + 1 + ct * HW + b * 64) + h;  /* input position p's slot row half: dst[2 * p] */
            /* stages 4, 2, 1 on the rows 8g .. 8g + 7: then row p is input position p's slot row */
            for (int g = 0; g < 8 && g * 8 < lanes; g++) {
                v4 *q = rows + 16 * g;
                v4 v0 = q[0], v1 = q[2], v2 = q[4], v3 = q[6], v4_ = q[8], v5 = q[10], v6 = q[12], v7 = q[14];
                SWAP(v0, v4_, 4, m4); SWAP(v1, v5, 4, m4); SWAP(v2, v6, 4, m4); SWAP(v3, v7, 4, m4);
                SWAP(v0, v2, 2, m2); SWAP(v1, v3, 2, m2); SWAP(v4_, v6, 2, m2); SWAP(v5, v7, 2, m2);
                SWAP(v0, v1, 1, m1); SWAP(v2, v3, 1, m1); SWAP(v4_, v5, 1, m1); SWAP(v6, v7, 1, m1);
                v4 out[8] = {v0, v1, v2, v3, v4_, v5, v6, v7};
                int n = lanes - 8 * g < 8 ? lanes - 8 * g : 8;
                for (int i = 0; i < n; i++) dst[2 * (8 * g + i)] = out[i] & en;
            }
        }
    }
    }
}

/* 32 bytes, byte i 0xFF where bit i of m is set: each byte picks its mask byte (i / 8), then tests
   its own bit. */
static inline __m256i bytes_of_bits(uint32_t m) {
    const __m256i pick = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                          2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    __m256i spread = _mm256_shuffle_epi8(_mm256_set1_epi32((int)m), pick);
    return _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
}

/* The class counts from the bit planes that lgn_gates left: per 32 samples, plane q's bits as bytes
   select bit q of the count (low and high byte apart); then, sample-major, the score of each count
   from a table of count / tau (the same float division, done once per count). */
static void decode(const uint64_t *planes, float *out, const float *score_of, int valid, uint8_t *lo_hi) {
    for (int c = 0; c < NCLS; c++) {
        for (int k = 0; k * 32 < valid; k++) {
            __m256i lo = _mm256_setzero_si256(), hi = _mm256_setzero_si256();
            for (int q = 0; q < NP; q++) {
                uint32_t bits = (uint32_t)(planes[(c * NP + q) * 8 + k / 2] >> (32 * (k & 1)));
                __m256i term = _mm256_and_si256(bytes_of_bits(bits), _mm256_set1_epi8((char)(1 << (q & 7))));
                if (q < 8) lo = _mm256_or_si256(lo, term);
                else hi = _mm256_or_si256(hi, term);
            }
            _mm256_store_si256((__m256i *)(lo_hi + (2 * c) * TILE + k * 32), lo);
            _mm256_store_si256((__m256i *)(lo_hi + (2 * c + 1) * TILE + k * 32), hi);
        }
    }
    for (int s = 0; s < valid; s++)
        for (int c = 0; c < NCLS; c++)
            out[(int64_t)s * NCLS + c] = score_of[lo_hi[2 * c * TILE + s] | (lo_hi[(2 * c + 1) * TILE + s] << 8)];
}

/* count / tau for every count 0..K, 8 at a time */
static void score_table(float *score_of, float tau) {
    for (int i = 0; i <= K; i += 8)
        _mm256_store_ps(score_of + i, _mm256_div_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(_mm256_set1_epi32(i),
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))), _mm256_set1_ps(tau)));
}

/* The tile's slot rows from pre-packed input: eight words of each input from word w0, zeros past the end. */
static void load_rows(v8 *act, const uint64_t *bits, int64_t words, int64_t w0) {
    int64_t left = words - w0;
    for (int i = 0; i < NI; i++) {
        uint64_t *row = (uint64_t *)(act + 1 + i);
        const uint64_t *src = bits + (int64_t)i * words + w0;
        if (left >= 8) {
            memcpy(row, src, 64);
        } else {
            for (int w = 0; w < 8; w++) row[w] = w < left ? src[w] : 0;
        }
    }
}
"""


# The drivers over the tiles, the same for both ISAs (each body defines score_table and load_rows).
_RUN_DRIVERS = r"""/* Pre-packed input: bits[i * words + w] holds input i of samples 64 w .. 64 w + 63 (bit j: sample
   64 w + j); a tile's eight words of an input are its slot row. Words past the end read as zeros. */
void lgn_run_packed(const uint64_t *bits, int64_t words, int64_t n, float *out, uint64_t *scratch, float tau) {
    v8 *act = (v8 *)scratch;
    uint64_t *masks = scratch + (int64_t)NSLOT * 8;
    uint8_t *lo_hi = (uint8_t *)(masks + (int64_t)GROUP * MSTRIDE);
    float *score_of = (float *)(lo_hi + 2 * NCLS * TILE);
    uint64_t *planes = (uint64_t *)(score_of + SCORES);
    act[0] = (v8){0};
    score_table(score_of, tau);
    int64_t tiles = (n + TILE - 1) / TILE;
    for (int64_t t = 0; t < tiles; t++) {
        load_rows(act, bits, words, t * 8);
        lgn_gates(scratch, bits, planes);
        int64_t valid = n - t * TILE < TILE ? n - t * TILE : TILE;
        decode(planes, out + t * TILE * NCLS, score_of, (int)valid, lo_hi);
    }
}

void lgn_run(const void *xv, int64_t n, float *out, uint64_t *scratch, const void *cut,
             const uint64_t *enable, float tau) {
    const xin *x = (const xin *)xv;
    v8 *act = (v8 *)scratch;
    uint64_t *masks = scratch + (int64_t)NSLOT * 8;
    uint8_t *lo_hi = (uint8_t *)(masks + (int64_t)GROUP * MSTRIDE);
    float *score_of = (float *)(lo_hi + 2 * NCLS * TILE);
    uint64_t *planes = (uint64_t *)(score_of + SCORES);
    xin *pad = (xin *)(planes + (NCLS + 1) * NP * 8);
    act[0] = (v8){0};
    score_table(score_of, tau);
    int64_t tiles = n / TILE, rest = n % TILE;
    for (int64_t t = 0; t < tiles; t++) {
        const xin *tx = x + t * TILE * D;
        const xin *next = t + 1 < tiles ? tx + TILE * D : tx;
        encode(tx, act, masks, cut, enable);
        lgn_gates(scratch, next, planes);
        decode(planes, out + t * TILE * NCLS, score_of, TILE, lo_hi);
    }
    if (rest) {
        memset(pad, 0, sizeof(xin) * TILE * D);
        memcpy(pad, x + tiles * TILE * D, sizeof(xin) * rest * D);
        encode(pad, act, masks, cut, enable);
        lgn_gates(scratch, pad, planes);
        decode(planes, out + tiles * TILE * NCLS, score_of, (int)rest, lo_hi);
    }
}
"""

_BODIES = {"avx512": _BODY + _RUN_DRIVERS, "avx2": _BODY_AVX2 + _RUN_DRIVERS}
