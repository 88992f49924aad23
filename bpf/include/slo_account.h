/* SPDX-License-Identifier: GPL-2.0 */
/*
 * slo_account.h: per-cgroup latency accounting shared by the observe-mode
 * tracer (bpf/runqueue) and the scheduler (bpf/scheduler), so both feed the
 * same metrics with the same meaning.
 *
 * A wakeup "meets its deadline" when it ran within the cgroup's latency
 * budget. The overload bit follows an exponentially weighted miss rate:
 * every judged wakeup moves the rate 1/1024 of the way towards 0 (met) or
 * 1 (missed). The bit sets when the rate exceeds the allowed miss fraction
 * (1 - target) and clears when it falls below half of that, so a cgroup at
 * the edge does not flap. Worked example, target 0.99 (1% allowed): a
 * 1 ms periodic task whose every wakeup misses sets the bit after ~11
 * wakeups (1 - (1023/1024)^11 > 1%); once it meets every deadline again the
 * rate decays from ~100% below 0.5% after ~5400 wakeups (~5 s).
 *
 * Updates are plain read-modify-write from any CPU; a rare lost update
 * only nudges the estimate, which the next wakeups correct.
 */
#ifndef SCX_SLO_ACCOUNT_H
#define SCX_SLO_ACCOUNT_H

#include "latency_hist.h"

#define SLO_RATE_ONE	(1ULL << 32)	/* fixed point 1.0 for miss rates */
#define SLO_RATE_SHIFT	10		/* EWMA weight 1/1024 per wakeup */
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
	u64 miss_rate;		/* EWMA, SLO_RATE_ONE == every wakeup missed */
	u64 last_judged_ns;	/* lets userspace clear bits of idle cgroups */
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

/*
 * slo_judge counts one wakeup against the cgroup's budget and returns the
 * new overload state for its slot: 1 set, 0 clear, -1 unchanged.
 */
static __always_inline int slo_judge(struct cg_stats *s, const struct slo_entry *slo,
				     u64 lat_ns, u64 now, u32 overloaded)
{
	u64 rate = s->miss_rate;
	bool miss = lat_ns > slo->budget_ns;

	__sync_fetch_and_add(&s->deadlines, 1);
	if (miss) {
		__sync_fetch_and_add(&s->misses, 1);
		rate += (SLO_RATE_ONE - rate) >> SLO_RATE_SHIFT;
	} else {
		rate -= rate >> SLO_RATE_SHIFT;
	}
	s->miss_rate = rate;
	s->last_judged_ns = now;

	if (!overloaded && rate > slo->allowed_miss)
		return 1;
	if (overloaded && rate < slo->allowed_miss / 2)
		return 0;
	return -1;
}

#endif
