/* SPDX-License-Identifier: GPL-2.0 */
/*
 * latency_hist.h: the latency histogram layout shared by every scx-slo BPF
 * program and by Go (internal/latencyhist mirrors these constants; a test
 * checks they agree).
 *
 * Buckets are log2 with HIST_SUB linear sub-buckets per power of two, in
 * units of 2^HIST_UNIT_SHIFT ns (256 ns). With u = ns >> 8:
 *   u < 4:   bucket u                      (0 .. 1 us, 256 ns wide)
 *   u >= 4:  msb = floor(log2 u), sub = next 2 bits below the msb,
 *            bucket (msb - 1) * 4 + sub
 * e.g. 3 us: u = 11, msb = 3, sub = (11 >> 1) & 3 = 1, bucket 9 covering
 * [2560, 3072) ns. Relative error is at most 25%, and 96 buckets reach
 * 2^33 ns (8.6 s); anything slower lands in the last bucket.
 */
#ifndef SCX_SLO_LATENCY_HIST_H
#define SCX_SLO_LATENCY_HIST_H

#define HIST_UNIT_SHIFT	8
#define HIST_SUB_BITS	2
#define HIST_BUCKETS	96

/* floor(log2(v)) for v > 0, branch-light so the verifier sees no loop. */
static __always_inline u32 hist_log2(u64 v)
{
	u32 r = 0;

	if (v >> 32) { v >>= 32; r += 32; }
	if (v >> 16) { v >>= 16; r += 16; }
	if (v >> 8)  { v >>= 8;  r += 8; }
	if (v >> 4)  { v >>= 4;  r += 4; }
	if (v >> 2)  { v >>= 2;  r += 2; }
	if (v >> 1)  { r += 1; }
	return r;
}

static __always_inline u32 hist_bucket(u64 ns)
{
	u64 u = ns >> HIST_UNIT_SHIFT;
	u32 msb, sub, idx;

	if (u < (1 << HIST_SUB_BITS))
		return u;
	msb = hist_log2(u);
	sub = (u >> (msb - HIST_SUB_BITS)) & ((1 << HIST_SUB_BITS) - 1);
	idx = (msb - 1) * (1 << HIST_SUB_BITS) + sub;
	return idx < HIST_BUCKETS ? idx : HIST_BUCKETS - 1;
}

#endif
