/* SPDX-License-Identifier: GPL-2.0 */
/*
 * slo_account.h: per-cgroup latency accounting shared by the observe-mode
 * tracer (bpf/runqueue) and the scheduler (bpf/scheduler), so both feed the
 * same metrics with the same meaning.
 *
 * A wakeup "meets its deadline" when it ran within the cgroup's latency
 * budget. The overload bit follows two exponentially weighted miss rates,
 * moved towards 0 (met) or 1 (missed) at every judged wakeup: a slow one
 * (weight 1/1024) that sees a steady excess over the allowed miss fraction
 * (1 - target), and a fast one (weight 1/16) that sees a burst at once.
 * The bit sets when the slow rate exceeds the allowed fraction, or the
 * fast rate exceeds max(2 x allowed, 1/2); it clears when the slow rate is
 * below half the allowed fraction and the fast one below the allowed
 * fraction, so a cgroup at the edge does not flap.
 *
 * Worked example, target 0.99 (1% allowed), a 1 ms periodic task: if every
 * wakeup suddenly misses, the fast rate passes 1/2 after 11 wakeups
 * (1 - (15/16)^11 > 0.5): the bit is set ~11 ms into the overload. A steady
 * 3% miss rate never moves the fast rate past 1/2 but the slow rate passes
 * 1% after ~350 wakeups. When misses stop, the fast rate is below 1% within
 * ~70 wakeups and the slow one below 0.5% soon after (from a short burst)
 * or after up to ~5400 wakeups (from a long overload, the slow rate near
 * 100%).
 *
 * Updates are plain read-modify-write from any CPU; a rare lost update
 * only nudges the estimate, which the next wakeups correct.
 */
#ifndef SCX_SLO_ACCOUNT_H
#define SCX_SLO_ACCOUNT_H

#include "latency_hist.h"

#define SLO_RATE_ONE	(1ULL << 32)	/* fixed point 1.0 for miss rates */
#define SLO_RATE_SHIFT	10		/* slow EWMA weight 1/1024 per wakeup */
#define SLO_FAST_SHIFT	4		/* fast EWMA weight 1/16 per wakeup */
#define SLO_MAX_SLOTS	4096		/* entries of the mmapable overload array */

/* Value of the slo map, keyed by cgroup id; written by userspace. */
struct slo_entry {
	u64 budget_ns;
	u64 allowed_miss;	/* (1 - target) * SLO_RATE_ONE */
	u32 slot;		/* index into the overload array */
	u32 importance;		/* 1..1000, used by the scheduler */
};

/* Value of the per-cgroup stats map, keyed by cgroup id. */
struct cg_stats {
	u64 hist[HIST_BUCKETS];
	u64 count;
	u64 sum_ns;
	u64 deadlines;
	u64 misses;
	s64 waiting;		/* woken (or preempted) and not yet running */
	u64 miss_rate;		/* slow EWMA, SLO_RATE_ONE == every wakeup missed */
	u64 last_judged_ns;	/* lets userspace clear bits of idle cgroups */
	u64 fast_rate;		/* fast EWMA, same scale */
};

static __always_inline void hist_record(struct cg_stats *s, u64 lat_ns)
{
	u32 b = hist_bucket(lat_ns);

	/* Re-check after hiding b from clang, which would drop the check as
	 * redundant; the verifier needs it to bound the index. */
	asm volatile("" : "+r"(b));
	if (b >= HIST_BUCKETS)
		return;
	__sync_fetch_and_add(&s->hist[b], 1);
	__sync_fetch_and_add(&s->count, 1);
	__sync_fetch_and_add(&s->sum_ns, lat_ns);
}

/* ewma moves a miss rate 1/2^shift of the way towards 1 (miss) or 0. */
static __always_inline u64 ewma(u64 rate, bool miss, u32 shift)
{
	if (miss)
		return rate + ((SLO_RATE_ONE - rate) >> shift);
	return rate - (rate >> shift);
}

/*
 * slo_judge counts one wakeup against the cgroup's budget and returns the
 * new overload state for its slot: 1 set, 0 clear, -1 unchanged.
 */
static __always_inline int slo_judge(struct cg_stats *s, const struct slo_entry *slo,
				     u64 lat_ns, u64 now, u32 overloaded)
{
	bool miss = lat_ns > slo->budget_ns;
	u64 slow = ewma(s->miss_rate, miss, SLO_RATE_SHIFT);
	u64 fast = ewma(s->fast_rate, miss, SLO_FAST_SHIFT);
	u64 burst = slo->allowed_miss * 2;

	if (burst < SLO_RATE_ONE / 2)
		burst = SLO_RATE_ONE / 2;
	__sync_fetch_and_add(&s->deadlines, 1);
	if (miss)
		__sync_fetch_and_add(&s->misses, 1);
	s->miss_rate = slow;
	s->fast_rate = fast;
	s->last_judged_ns = now;

	if (!overloaded && (slow > slo->allowed_miss || fast > burst))
		return 1;
	if (overloaded && slow < slo->allowed_miss / 2 && fast < slo->allowed_miss)
		return 0;
	return -1;
}

/*
 * The three maps userspace reads the same way from either program, plus
 * the zeroed value new entries are copied from (a cg_stats is too big for
 * the BPF stack). Userspace may resize cgroup_stats before loading.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, u64);
	__type(value, struct cg_stats);
} cgroup_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SLO_MAX_SLOTS);
	__type(key, u64);
	__type(value, struct slo_entry);
} slos SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, SLO_MAX_SLOTS);
	__type(key, u32);
	__type(value, u32);
} overload SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct cg_stats);
} zero_stats SEC(".maps");

/* cg_stats_get returns the cgroup's stats, creating them; NULL if the map
 * is full. */
static __always_inline struct cg_stats *cg_stats_get(u64 cgid)
{
	struct cg_stats *s = bpf_map_lookup_elem(&cgroup_stats, &cgid);
	u32 zero = 0;
	struct cg_stats *init;

	if (s)
		return s;
	init = bpf_map_lookup_elem(&zero_stats, &zero);
	if (!init)
		return NULL;
	/* NOEXIST: another CPU may have inserted it meanwhile; that's fine. */
	bpf_map_update_elem(&cgroup_stats, &cgid, init, BPF_NOEXIST);
	return bpf_map_lookup_elem(&cgroup_stats, &cgid);
}

#endif
