/* SPDX-License-Identifier: GPL-2.0 */
/*
 * wait_slots.h: the per-CPU part of each cgroup's waiting count and wait
 * histogram, shared by the observe-mode tracer (bpf/runqueue) and the
 * scheduler (bpf/scheduler). A wakeup and the switch that ends its wait
 * would otherwise look up the cgroup's stats (a hash lookup each) and
 * bounce their cache lines between every CPU the cgroup's tasks run on
 * with atomics: on a node with a hundred CPUs, one busy pod's stats line
 * would be written from all of them. With the slots, a CPU writes its
 * own. Userspace adds the slots to cgroup_stats (slomaps.SlotReader).
 *
 * Waiting: WAIT_SLOTS_PER_CPU slots per CPU, each counting one cgroup's
 * tasks whose wait started on that CPU, picked by a hash of the cgroup
 * id. Only the CPU owning a slot increments it or gives it to another
 * cgroup, and only when its count is 0, so no wait in progress is ever
 * moved; the wait's end decrements the slot it was counted in, from
 * whichever CPU. A cgroup whose slot is taken by another with waiting
 * tasks is counted in its stats' `waiting`.
 *
 * Histograms: HIST_SLOTS_PER_CPU slots per CPU, each holding one
 * cgroup's histogram, count and sum of the waits that ended on that CPU,
 * picked by the same hash. Only the owning CPU writes a slot's counts
 * (plain adds). A free slot (cgid 0) is taken by the first cgroup that
 * hashes to it; it is freed only when that cgroup is removed
 * (cgroup_rmdir), so a cgroup's counts never move and its totals, its
 * stats plus its slots, only grow. A cgroup whose slot is held by another
 * is recorded in its stats.
 *
 * The loader (slomaps.SizeSlots) sizes both maps to possible CPUs x slots
 * per CPU and sets slot_nr_cpus: 54 KB per possible CPU.
 */
#ifndef SCX_SLO_WAIT_SLOTS_H
#define SCX_SLO_WAIT_SLOTS_H

#include "slo_account.h"

#define WAIT_SLOTS_PER_CPU	256
#define HIST_SLOTS_PER_CPU	64
#define SLOT_MAX_CPUS		8192	/* bound of the loop over CPUs at cgroup_rmdir */

struct waiting_slot {
	u64 cgid;	/* cgroup counted here; 0 if never used */
	s64 waiting;	/* its waiting tasks counted here */
};

struct hist_slot {
	u64 cgid;	/* owner; 0: free */
	u64 count;
	u64 sum_ns;
	u64 hist[HIST_BUCKETS];
};

/* In BTF for the loader, which sizes the maps and sets slot_nr_cpus. */
const volatile u32 wait_slots_per_cpu = WAIT_SLOTS_PER_CPU;
const volatile u32 hist_slots_per_cpu = HIST_SLOTS_PER_CPU;
const volatile u32 slot_nr_cpus = 1;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, WAIT_SLOTS_PER_CPU);
	__type(key, u32);
	__type(value, struct waiting_slot);
} waiting_slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, HIST_SLOTS_PER_CPU);
	__type(key, u32);
	__type(value, struct hist_slot);
} hist_slots SEC(".maps");

/* slot_hash picks a cgroup's slot among n (a power of two up to 2^8):
 * Fibonacci hashing, the top bits of cgid * 2^64 / phi. */
static __always_inline u32 slot_hash(u64 cgid, u32 n)
{
	return (u32)((cgid * 0x9E3779B97F4A7C15ULL) >> 56) & (n - 1);
}

/*
 * slot_count_waiting counts one more waiting task of cgid and returns
 * where: a waiting_slots index + 1, or 0 for the cgroup's stats, which
 * *sp then points to (NULL: the stats map is full and it is counted
 * nowhere). The stats entry is created on a slot miss, so a cgroup is
 * listed from its first wakeup.
 */
static __always_inline u32 slot_count_waiting(u64 cgid, struct cg_stats **sp)
{
	u32 k = bpf_get_smp_processor_id() * WAIT_SLOTS_PER_CPU + slot_hash(cgid, WAIT_SLOTS_PER_CPU);
	struct waiting_slot *w = bpf_map_lookup_elem(&waiting_slots, &k);
	struct cg_stats *s;

	*sp = NULL;
	if (w && w->cgid == cgid) {
		__sync_fetch_and_add(&w->waiting, 1);
		return k + 1;
	}
	s = cg_stats_get(cgid);
	if (!s)
		return 0;
	if (w && w->waiting == 0) {
		w->cgid = cgid;
		__sync_fetch_and_add(&w->waiting, 1);
		return k + 1;
	}
	*sp = s;
	__sync_fetch_and_add(&s->waiting, 1);
	return 0;
}

/* slot_uncount_waiting ends the count slot_count_waiting made in slot
 * `where` (non-zero), from any CPU. */
static __always_inline void slot_uncount_waiting(u32 where)
{
	u32 k = where - 1;
	struct waiting_slot *w = bpf_map_lookup_elem(&waiting_slots, &k);

	if (w)
		__sync_fetch_and_add(&w->waiting, -1);
}

/* Each program that includes this header defines it: the cgroup id its
 * accounting keys on (cgroup v2, or the cpu controller's v1 hierarchy). */
static __always_inline u64 task_cgid(struct task_struct *p);

/*
 * slot_hist_of returns this CPU's histogram slot for cgid, the cgroup p
 * waited in, taking it if free; NULL if another cgroup holds it. It
 * takes a slot only while p is still in cgid (so the cgroup lives, and
 * its removal will free the slot) and cgid has stats for userspace to
 * add it to. task_cgid runs only then: a free slot is the rare case.
 */
static __always_inline struct hist_slot *slot_hist_of(u64 cgid, struct task_struct *p)
{
	u32 k = bpf_get_smp_processor_id() * HIST_SLOTS_PER_CPU + slot_hash(cgid, HIST_SLOTS_PER_CPU);
	struct hist_slot *h = bpf_map_lookup_elem(&hist_slots, &k);
	int i;

	if (!h || h->cgid == cgid)
		return h;
	if (h->cgid || task_cgid(p) != cgid || !cg_stats_get(cgid))
		return NULL;
	/* Clear what a removed cgroup left, then own it. */
	h->count = 0;
	h->sum_ns = 0;
	for (i = 0; i < HIST_BUCKETS; i++)
		h->hist[i] = 0;
	h->cgid = cgid;
	return h;
}

/* slot_hist_record records one wait in a slot slot_hist_of returned. */
static __always_inline void slot_hist_record(struct hist_slot *h, u64 lat_ns)
{
	u32 b = hist_bucket(lat_ns);

	asm volatile("" : "+r"(b));	/* see hist_record */
	if (b < HIST_BUCKETS) {
		h->hist[b]++;
		h->count++;
		h->sum_ns += lat_ns;
	}
}

/* slot_free_hist frees a removed cgroup's histogram slots on every CPU.
 * Its tasks are gone, so no CPU writes them meanwhile. */
static __always_inline void slot_free_hist(u64 cgid)
{
	u32 base = slot_hash(cgid, HIST_SLOTS_PER_CPU), k;
	struct hist_slot *h;
	int cpu;

	for (cpu = 0; cpu < SLOT_MAX_CPUS; cpu++) {
		if (cpu >= slot_nr_cpus)
			break;
		k = cpu * HIST_SLOTS_PER_CPU + base;
		h = bpf_map_lookup_elem(&hist_slots, &k);
		if (h && h->cgid == cgid)
			h->cgid = 0;
	}
}

#endif
