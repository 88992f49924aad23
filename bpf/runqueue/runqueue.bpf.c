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
 * per CPU, see wait_slots.h; userspace adds them to cg_stats), preempts
 * (victim, by) pairs, overload (mmapable, one u32 per SLO slot) and drops
 * (per-CPU counters). They cost about 54 KB per possible CPU.
 * Userspace writes slos (budget, slot) and deletes entries of removed
 * cgroups; cgroup_rmdir removes stats in-kernel as soon as a cgroup dies.
 */
#include "kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "wait_slots.h"

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

/* start_wait marks p runnable-but-waiting and returns its cgroup id. */
static __always_inline u64 start_wait(struct task_struct *p, u64 now)
{
	struct wait_mark *m;
	struct cg_stats *s;

	m = bpf_task_storage_get(&task_wait, p, NULL, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!m) {
		drop(DROP_NO_STORAGE);
		return 0;
	}
	if (m->since_ns)
		return m->cgid;	/* already waiting: keep the earliest start */
	m->since_ns = now;
	m->cgid = task_cgid(p);
	m->wait_slot = slot_count_waiting(m->cgid, &s);
	if (!m->wait_slot && !s)
		drop(DROP_MAP_FULL);
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
	struct hist_slot *h;
	struct cg_stats *s = NULL;
	struct slo_entry *slo;
	u64 lat, cgid, gen;
	u32 *bit;
	int r;

	m = bpf_task_storage_get(&task_wait, p, NULL, 0);
	if (!m || !m->since_ns)
		return 0;
	lat = now > m->since_ns ? now - m->since_ns : 0;
	m->since_ns = 0;
	cgid = m->cgid;
	if (m->wait_slot)
		slot_uncount_waiting(m->wait_slot);
	h = slot_hist_of(cgid, p);
	if (!h || !m->wait_slot) {
		s = stats_of(cgid);
		if (!s)
			return cgid;
		if (!m->wait_slot)
			__sync_fetch_and_add(&s->waiting, -1);
	}
	if (h) {
		slot_hist_record(h, lat);
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
	slot_free_hist(id);
	bpf_map_delete_elem(&cgroup_stats, &id);
	return 0;
}
