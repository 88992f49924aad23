//go:build ignore

// SPDX-License-Identifier: GPL-2.0
/*
 * runqueue.bpf.c: observe-mode run-queue latency per cgroup.
 *
 * A task's wait starts when it becomes runnable (sched_wakeup,
 * sched_wakeup_new, or being switched out while still TASK_RUNNING, i.e.
 * preempted) and ends when sched_switch picks it as `next`. The wait is
 * charged to the cgroup of the task that waited, read from `next` itself:
 * bpf_get_current_cgroup_id() would name the waker or `prev`.
 *
 * Times come from the monotonic clock (bpf_ktime_get_ns), the largest part
 * of the tracer's cost on a virtualised host (80 ns a call here). The run
 * queue's clock would be three loads, but the kernel skips updating it
 * when a wakeup preempts the running task (rq_clock_skip_update), so a
 * preempting wakeup would read as a wait of 0 ns: the very waits this
 * exporter is about would be undercounted.
 *
 * Example: a latency probe in /ls wakes at t=0 while a hog from /batch runs;
 * the tick preempts the hog at t=3.1 ms and picks the probe. We record
 * 3.1 ms in /ls's histogram, judge it against /ls's 2 ms budget (a miss),
 * count one preemption of /batch by /ls, and start /batch's own wait.
 *
 * Maps userspace reads: cg_stats (per cgroup), waiting_slots and
 * hist_slots (the part of each cgroup's waiting count and histogram kept
 * per CPU, see there; userspace adds them to cg_stats), preempts
 * (victim, by) pairs, overload (mmapable, one u32 per SLO slot) and drops
 * (per-CPU counters). They cost about 54 KB per possible CPU.
 * Userspace writes slos (budget, slot) and deletes entries of removed
 * cgroups; cgroup_rmdir removes stats in-kernel as soon as a cgroup dies.
 */
#include "kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "slo_account.h"

char LICENSE[] SEC("license") = "GPL";

/* Set by the loader: which hierarchy cgroup ids come from. */
const volatile bool use_cgroup2 = true;
const volatile int v1_hierarchy_id = 0;

/*
 * Cleared by userspace while the scheduler is attached: it judges
 * deadlines itself and writes the same (shared) overload array, so the
 * tracer then only keeps histograms.
 */
volatile bool judge_slos = true;

/*
 * Bumped by userspace after every change to the slos map, so a task can
 * remember that its cgroup has no SLO and skip the lookup on each switch
 * until the map changes.
 */
volatile u64 slos_generation;

/* Bumped on every mkdir/rmdir in our hierarchy: userspace re-walks the
 * cgroup tree only when it moved, instead of on every resync tick. */
volatile u64 cgroup_generation;

enum drop_reason {
	DROP_MAP_FULL,
	DROP_NO_STORAGE,
	DROP_MAX,
};

/* Puts the enum into BTF, where a test checks it against DropReasons. */
const volatile enum drop_reason drop_nr = DROP_MAX;

struct wait_mark {
	u64 since_ns;	/* 0 when the task is not waiting */
	u64 cgid;	/* cgroup whose waiting count holds this task */
	u64 no_slo_cgid;	/* this cgroup had no SLO ... */
	u64 no_slo_gen;		/* ... at slos_generation - 1 (0: never looked) */
	u32 wait_slot;	/* waiting_slots index + 1 counting this task; 0: cgid's stats */
	u32 pad;
};

/*
 * Where a wakeup counts its task as waiting, so that it need not look up
 * the cgroup's stats (a hash lookup, the largest cost of a wakeup after
 * the clock): WAIT_SLOTS_PER_CPU slots per CPU, each counting one
 * cgroup's tasks whose wait started on that CPU, picked by a hash of the
 * cgroup id. Only the CPU owning a slot increments it or gives it to
 * another cgroup, and only when its count is 0, so no wait in progress
 * is ever moved; the wait's end decrements the slot it was counted in,
 * from whichever CPU. A cgroup's waiting tasks are its stats' `waiting`
 * plus its slots' counts (summed in userspace). A cgroup whose slot is
 * taken by another with waiting tasks is counted in its stats, as before.
 * The loader sizes the map to possible CPUs x WAIT_SLOTS_PER_CPU.
 */
#define WAIT_SLOTS_PER_CPU	256

struct waiting_slot {
	u64 cgid;	/* cgroup counted here; 0 if never used */
	s64 waiting;	/* its waiting tasks counted here */
};

/*
 * Where a switch records a wait, so that it need not look up the
 * cgroup's stats (another hash lookup) nor bounce their cache lines
 * between CPUs with atomics: HIST_SLOTS_PER_CPU slots per CPU, each
 * holding one cgroup's histogram, count and sum of the waits that ended
 * on that CPU, picked by the same hash. Only the owning CPU writes a
 * slot's counts (plain adds). A free slot (cgid 0) is taken by the first
 * cgroup that hashes to it; it is freed only when that cgroup is removed
 * (cgroup_rmdir), so a cgroup's counts never move and its totals, its
 * stats plus its slots (summed in userspace), only grow. A cgroup whose
 * slot is held by another is recorded in its stats, as before.
 */
#define HIST_SLOTS_PER_CPU	64

struct hist_slot {
	u64 cgid;	/* owner; 0: free */
	u64 count;
	u64 sum_ns;
	u64 hist[HIST_BUCKETS];
};

/* Put the constants into BTF for the loader, which sizes the maps to
 * possible CPUs x slots per CPU and sets nr_cpus. */
const volatile u32 wait_slots_per_cpu = WAIT_SLOTS_PER_CPU;
const volatile u32 hist_slots_per_cpu = HIST_SLOTS_PER_CPU;
const volatile u32 nr_cpus = 1;
#define MAX_CPUS	8192	/* bound of the loop over CPUs at cgroup_rmdir */

/* slot_hash picks a cgroup's slot among n (a power of two up to 2^8):
 * Fibonacci hashing, the top bits of cgid * 2^64 / phi. */
static __always_inline u32 slot_hash(u64 cgid, u32 n)
{
	return (u32)((cgid * 0x9E3779B97F4A7C15ULL) >> 56) & (n - 1);
}

struct preempt_key {
	u64 victim;
	u64 by;
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct wait_mark);
} task_wait SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct preempt_key);
	__type(value, u64);
} preempts SEC(".maps");

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

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, DROP_MAX);
	__type(key, u32);
	__type(value, u64);
} drops SEC(".maps");

static __always_inline void drop(u32 reason)
{
	u64 *c = bpf_map_lookup_elem(&drops, &reason);

	if (c)
		(*c)++;
}

static __always_inline u64 task_cgid(struct task_struct *p)
{
	if (use_cgroup2)
		return p->cgroups->dfl_cgrp->kn->id;
	return p->cgroups->subsys[bpf_core_enum_value(enum cgroup_subsys_id, cpu_cgrp_id)]->cgroup->kn->id;
}

static __always_inline struct cg_stats *stats_of(u64 cgid)
{
	struct cg_stats *s = cg_stats_get(cgid);

	if (!s)
		drop(DROP_MAP_FULL);
	return s;
}

/* wait_clock is the clock both ends of a wait are read from (see top). */
static __always_inline u64 wait_clock(void)
{
	return bpf_ktime_get_ns();
}

/*
 * count_waiting counts one more waiting task of cgid and returns where:
 * a waiting_slots index + 1, or 0 for the cgroup's stats (or nowhere, if
 * the stats map is full). The stats entry is created on a slot miss, so a
 * cgroup is listed from its first wakeup as before.
 */
static __always_inline u32 count_waiting(u64 cgid)
{
	u32 k = bpf_get_smp_processor_id() * WAIT_SLOTS_PER_CPU + slot_hash(cgid, WAIT_SLOTS_PER_CPU);
	struct waiting_slot *w = bpf_map_lookup_elem(&waiting_slots, &k);
	struct cg_stats *s;

	if (w && w->cgid == cgid) {
		__sync_fetch_and_add(&w->waiting, 1);
		return k + 1;
	}
	s = stats_of(cgid);
	if (!s)
		return 0;
	if (w && w->waiting == 0) {
		w->cgid = cgid;
		__sync_fetch_and_add(&w->waiting, 1);
		return k + 1;
	}
	__sync_fetch_and_add(&s->waiting, 1);
	return 0;
}

/*
 * hist_slot_of returns this CPU's slot for cgid, the cgroup p waited in,
 * taking it if free; NULL if another cgroup holds it. It takes a slot
 * only while p is still in cgid (so the cgroup lives, and its removal
 * will free the slot) and cgid has stats for userspace to add it to
 * (when the map is full, the caller's fallback counts the drop).
 */
static __always_inline struct hist_slot *hist_slot_of(u64 cgid, struct task_struct *p)
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

/* free_hist_slots frees a removed cgroup's slots on every CPU. Its
 * tasks are gone, so no CPU writes them meanwhile. */
static __always_inline void free_hist_slots(u64 cgid)
{
	u32 base = slot_hash(cgid, HIST_SLOTS_PER_CPU), k;
	struct hist_slot *h;
	int cpu;

	for (cpu = 0; cpu < MAX_CPUS; cpu++) {
		if (cpu >= nr_cpus)
			break;
		k = cpu * HIST_SLOTS_PER_CPU + base;
		h = bpf_map_lookup_elem(&hist_slots, &k);
		if (h && h->cgid == cgid)
			h->cgid = 0;
	}
}

/* start_wait marks p runnable-but-waiting and returns its cgroup id. */
static __always_inline u64 start_wait(struct task_struct *p, u64 now)
{
	struct wait_mark *m;

	m = bpf_task_storage_get(&task_wait, p, NULL, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!m) {
		drop(DROP_NO_STORAGE);
		return 0;
	}
	if (m->since_ns)
		return m->cgid;	/* already waiting: keep the earliest start */
	m->since_ns = now;
	m->cgid = task_cgid(p);
	m->wait_slot = count_waiting(m->cgid);
	return m->cgid;
}

static __always_inline void count_preemption(u64 victim, u64 by)
{
	struct preempt_key k = { .victim = victim, .by = by };
	u64 one = 1, *c;

	c = bpf_map_lookup_elem(&preempts, &k);
	if (c) {
		__sync_fetch_and_add(c, 1);
		return;
	}
	if (bpf_map_update_elem(&preempts, &k, &one, BPF_NOEXIST) && !bpf_map_lookup_elem(&preempts, &k))
		drop(DROP_MAP_FULL);
}

/*
 * end_wait records p's wait as it is switched in and returns its cgroup id
 * (0 if we never saw it become runnable). The wait is charged to the
 * cgroup p was in when it started waiting: the task's own cgroup, not the
 * waker's, and one lookup cheaper than re-reading it here.
 */
static __always_inline u64 end_wait(struct task_struct *p, u64 now)
{
	struct wait_mark *m;
	struct waiting_slot *w;
	struct hist_slot *h;
	struct cg_stats *s = NULL;
	struct slo_entry *slo;
	u64 lat, cgid, gen;
	u32 *bit, k, b;
	int r;

	m = bpf_task_storage_get(&task_wait, p, NULL, 0);
	if (!m || !m->since_ns)
		return 0;
	lat = now > m->since_ns ? now - m->since_ns : 0;
	m->since_ns = 0;
	cgid = m->cgid;
	k = m->wait_slot - 1;
	w = m->wait_slot ? bpf_map_lookup_elem(&waiting_slots, &k) : NULL;
	if (w)
		__sync_fetch_and_add(&w->waiting, -1);
	h = hist_slot_of(cgid, p);
	if (!h || !m->wait_slot) {
		s = stats_of(cgid);
		if (!s)
			return cgid;
		if (!m->wait_slot)
			__sync_fetch_and_add(&s->waiting, -1);
	}
	if (h) {
		b = hist_bucket(lat);
		asm volatile("" : "+r"(b));	/* see hist_record */
		if (b < HIST_BUCKETS) {
			h->hist[b]++;
			h->count++;
			h->sum_ns += lat;
		}
	} else {
		hist_record(s, lat);
	}

	if (!judge_slos)
		return cgid;
	gen = slos_generation + 1;
	if (m->no_slo_gen == gen && m->no_slo_cgid == cgid)
		return cgid;
	slo = bpf_map_lookup_elem(&slos, &cgid);
	if (!slo) {
		m->no_slo_cgid = cgid;
		m->no_slo_gen = gen;
		return cgid;
	}
	if (!s)
		s = stats_of(cgid);
	if (!s)
		return cgid;
	bit = bpf_map_lookup_elem(&overload, &slo->slot);
	if (!bit)
		return cgid;
	r = slo_judge(s, slo, lat, now, *bit);
	if (r >= 0)
		*bit = r;
	return cgid;
}

/*
 * sched_wakeup also fires for a task still on its CPU, woken after it
 * set itself to sleep but before it switched out (ttwu_runnable): it
 * waits for nothing, and a wait started here would last until its next
 * switch in, through the sleep that follows, and count it as waiting
 * meanwhile. A task being switched out is off its CPU by the time the
 * kernel enqueues it again, so on_cpu is 0 at every real wakeup.
 */
SEC("tp_btf/sched_wakeup")
int BPF_PROG(on_wakeup, struct task_struct *p)
{
	if (bpf_core_field_exists(p->on_cpu) && p->on_cpu)
		return 0;
	start_wait(p, wait_clock());
	return 0;
}

SEC("tp_btf/sched_wakeup_new")
int BPF_PROG(on_wakeup_new, struct task_struct *p)
{
	start_wait(p, wait_clock());
	return 0;
}

/* Signature since 5.18: (preempt, prev, next, prev_state). */
SEC("tp_btf/sched_switch")
int BPF_PROG(on_switch, bool preempt, struct task_struct *prev, struct task_struct *next,
	     unsigned int prev_state)
{
	u64 now = wait_clock();
	u64 by = 0, victim;

	/* pid 0 is the idle task: it never waits and never preempts. */
	if (next->pid)
		by = end_wait(next, now);
	/* prev_state 0 is TASK_RUNNING: prev was preempted and waits again. */
	if (prev->pid && prev_state == 0) {
		victim = start_wait(prev, now);
		/* next may have been runnable since before we attached. */
		if (!by && next->pid)
			by = task_cgid(next);
		if (by && victim && victim != by)
			count_preemption(victim, by);
	}
	return 0;
}

static __always_inline bool ours(struct cgroup *cgrp)
{
	return cgrp->root->hierarchy_id == (use_cgroup2 ? 0 : v1_hierarchy_id);
}

SEC("tp_btf/cgroup_mkdir")
int BPF_PROG(on_cgroup_mkdir, struct cgroup *cgrp, const char *path)
{
	if (ours(cgrp))
		__sync_fetch_and_add(&cgroup_generation, 1);
	return 0;
}

SEC("tp_btf/cgroup_rmdir")
int BPF_PROG(on_cgroup_rmdir, struct cgroup *cgrp, const char *path)
{
	u64 id;

	if (!ours(cgrp))
		return 0;
	__sync_fetch_and_add(&cgroup_generation, 1);
	id = cgrp->kn->id;
	free_hist_slots(id);
	bpf_map_delete_elem(&cgroup_stats, &id);
	return 0;
}
