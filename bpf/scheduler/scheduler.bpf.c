//go:build ignore

// SPDX-License-Identifier: GPL-2.0
/*
 * scheduler.bpf.c: scx-slo, an earliest-deadline-first sched_ext scheduler
 * for per-cgroup run-queue latency SLOs.
 *
 * Two kinds of work
 * -----------------
 * A cgroup listed in the `slos` map (written by the enforcer from the SLO
 * config) is latency work: each time one of its tasks becomes runnable it
 * gets a deadline
 *
 *	deadline = now + budget + penalty(cgroup)
 *
 * and waits in SLO_DSQ, ordered by deadline. Everything else is
 * best-effort: it waits in BE_DSQ, ordered by weighted virtual time, so
 * cpu.weight decides the split of whatever CPU the latency work leaves.
 *
 * Picking the next task (dispatch)
 * --------------------------------
 * Best-effort work as a whole carries one deadline too: be_since +
 * be_bound, where be_since is when best-effort work last started running
 * (or when BE_DSQ became non-empty). A CPU looking for work runs the head
 * of SLO_DSQ if its deadline is no later than that, else the head of
 * BE_DSQ. So latency work always goes first, but never for longer than
 * be_bound at a stretch: as long as a best-effort task is queued, one
 * starts somewhere at least every be_bound (40 ms by default). That is the
 * documented bound on batch starvation; within best-effort work each task
 * then waits its turn by virtual time.
 *
 * Fairness among SLO cgroups
 * --------------------------
 * penalty() is the bounded lag term: each SLO cgroup's CPU use decays over
 * a 100 ms window; a cgroup using one whole CPU at importance 100 has its
 * deadlines pushed back by lag_max (20 ms), at importance 1000 by 2 ms,
 * and never by more than lag_max. A cgroup cannot monopolise CPUs by
 * declaring an SLO: the more it runs, the later its deadlines, until other
 * SLO cgroups and then best-effort work (be_bound) get in.
 *
 * Preemption
 * ----------
 * Sorting is not enough: a CPU only looks for work when its current task
 * blocks or its slice ends, and at HZ=250 the tick that ends a slice comes
 * every 4 ms. So when an SLO task wakes and no CPU is idle, we find the
 * CPU whose running task has the latest deadline (best-effort counts as
 * infinitely late; ties go to the waking CPU, which needs no IPI). If that
 * deadline is later than the new one, the task takes the CPU. When the
 * victim is the waking CPU and nothing queued in SLO_DSQ is due sooner,
 * the task goes straight into its local DSQ with SCX_ENQ_PREEMPT (cuts
 * the running slice, no dispatch round trip). A remote victim is not
 * handed the task: the task queues in SLO_DSQ and the victim is kicked
 * with SCX_KICK_PREEMPT, so whichever CPU gets to dispatch first takes
 * it (often the waking CPU, once its waker blocks, before the IPI even
 * lands). Either way the victim is claimed at once (its cpu_keys slot
 * takes the new deadline), so the next wakeup of a burst looks elsewhere
 * instead of piling onto the same CPU.
 * SLO tasks run with slice = their budget (clamped to [250 us, 5 ms]): one
 * that runs that long without blocking goes back to the queue with a
 * fresh (later) deadline. Best-effort slices are 5 ms.
 *
 * Worked example (2 CPUs)
 * -----------------------
 * /web has an SLO (budget 1 ms, importance 100) and used 10% of a CPU
 * lately; /batch has two CPU hogs (cpu.weight 100) on both CPUs. At
 * t=100 ms a /web task wakes on CPU 1: penalty = 10% * 20 ms = 2 ms,
 * deadline = 103 ms. No CPU is idle, both hogs count as infinitely late,
 * the tie goes to CPU 1, and SLO_DSQ is empty: the task goes to CPU 1's
 * local DSQ with SCX_ENQ_PREEMPT and runs as soon as the interrupt
 * returns, instead of up to 4 ms later at the next tick. If a /web
 * thread on CPU 1 then wakes two workers (deadlines 103.2 and 103.3 ms)
 * while the hog runs on CPU 0: the first claims CPU 0 (its slot now reads
 * 103.2), queues and kicks it; the second finds no CPU running anything
 * later than 103.3, so it just queues, and CPU 1 takes it when the waker
 * blocks. Had another /web
 * task been queued with deadline 102 ms, ours would queue behind it and
 * CPU 1 would be kicked; its dispatch compares 102 ms with best-effort's
 * deadline (be_since 97 ms + 40 ms = 137 ms) and takes /web's head. Had
 * /web kept both CPUs busy with deadlines in the past, the hogs would
 * still get a CPU at t=137 ms.
 *
 * cpu.weight and cpu.max
 * ----------------------
 * A best-effort task's virtual time advances by runtime * 100 *
 * nr_runnable(cgroup) / (cgroup weight * task weight / 100): a cgroup's
 * weight is shared by its runnable tasks, so two cgroups at weights 100
 * and 300 get CPU 1:3 however many tasks each has. The hierarchy is
 * flattened: a task takes the weight of the cpu-controller cgroup it sits
 * in. Only tasks that slept have their virtual time clamped (to at most
 * one slice behind the present); a task that stayed runnable keeps the
 * credit its weight earned. cpu.max is a hard cap: runtime is charged to
 * the cgroup's period at every tick and when a task stops; once it
 * reaches the quota the running task's slice is cut (so the cap holds to
 * about a tick per CPU) and the cgroup's tasks park in THROTTLED_DSQ until
 * the period ends, when a 2 ms timer (armed only while tasks are parked)
 * kicks idle CPUs whose dispatch moves them back. SCX_OPS_ENQ_LAST makes
 * the kernel ask us even about a CPU's
 * last runnable task, which could otherwise run on past its quota.
 *
 * Starvation
 * ----------
 * Two bounds keep every task moving, as the sched_ext watchdog demands
 * (it ejects a scheduler that leaves a runnable task waiting timeout_ms,
 * 10 s here): best-effort work as a whole gets a CPU every be_bound (see
 * dispatch above), and any single best-effort task that has waited over
 * be_starve (500 ms), however low its weight, is run out of vtime order
 * by rescue(), at most one task per 100 ms.
 *
 * Accounting
 * ----------
 * Wakeup-to-run latency is measured from ops.runnable (or from being
 * preempted, ops.stopping with runnable) to ops.running and recorded with
 * slo_account.h into the same maps, with the same meaning, as the
 * observe-mode tracer (bpf/runqueue), so the slo collector reads both
 * modes with one code path.
 */
#include "sched_ext.h"
#include "slo_account.h"
#include "user_exit_info.h"

char LICENSE[] SEC("license") = "GPL";

#define SLO_DSQ		0
#define BE_DSQ		1
#define THROTTLED_DSQ	2

#define MAX_CPUS	512
#define NSEC_PER_USEC	1000ULL
#define NSEC_PER_MSEC	1000000ULL
#define USAGE_WINDOW_NS	(100 * NSEC_PER_MSEC)
#define TIMER_PERIOD_NS	(2 * NSEC_PER_MSEC)
#define BE_KEY		(~0ULL)	/* a running best-effort task is "infinitely late" */
#define CLOCK_MONOTONIC	1

/* Tunables, set by the loader before load (rodata). */
const volatile u64 be_slice_ns = 5 * NSEC_PER_MSEC;
const volatile u64 be_bound_ns = 40 * NSEC_PER_MSEC;
const volatile u64 lag_max_ns = 20 * NSEC_PER_MSEC;
const volatile u64 slo_slice_min_ns = 250 * NSEC_PER_USEC;
const volatile u64 slo_slice_max_ns = 5 * NSEC_PER_MSEC;
const volatile u64 be_starve_ns = 500 * NSEC_PER_MSEC;	/* see rescue() */

/*
 * Test-only: userspace sets it non-zero and the next tick calls
 * scx_bpf_error. Its own section (map) so that userspace's
 * read-modify-write of the value cannot clobber scheduler state.
 */
volatile u32 test_error_knob SEC(".data.knob");

/* ops.exit copies the kernel's exit info here; userspace only reads it. */
UEI_DEFINE(uei);

/* Scheduler state shared by all CPUs. */
u64 be_vnow;		/* virtual time of BE_DSQ's head when last dispatched */
u64 be_since;		/* best-effort work last started (or became queued) */
u64 next_unthrottle;	/* earliest end of a throttled cgroup's period */
u64 last_rescue;	/* last scan of BE_DSQ for starved tasks */
u64 timer_armed;	/* the unthrottle timer is pending */

enum stat_idx {
	STAT_ENQ_SLO,		/* SLO task queued */
	STAT_ENQ_BE,		/* best-effort task queued */
	STAT_DIRECT,		/* dispatched straight to an idle CPU at wakeup */
	STAT_KICK_PREEMPT,	/* CPU kicked to make room for a tighter deadline */
	STAT_KICK_IDLE,		/* idle CPU woken for a queued task */
	STAT_DISPATCH_SLO,	/* SLO task picked */
	STAT_DISPATCH_BE,	/* best-effort task picked */
	STAT_BE_BOUND,		/* best-effort picked over queued SLO work (be_bound hit) */
	STAT_THROTTLE,		/* task parked because its cgroup hit cpu.max */
	STAT_UNTHROTTLE,	/* parked task moved back after its period ended */
	STAT_NO_CTX,		/* task or cgroup context missing (allocation failed) */
	STAT_RESCUE,		/* best-effort task run out of vtime order: waited be_starve */
	STAT_PREEMPT_LOCAL,	/* of STAT_KICK_PREEMPT: the victim was the waking CPU (no IPI) */
	STAT_NR,
};

/* Userspace reads the stats array size from here; it also puts the enum into BTF for bpf2go. */
const volatile enum stat_idx stat_nr = STAT_NR;

struct task_ctx {
	u64 wait_since;		/* 0 when not waiting */
	u64 wait_cgid;		/* cgroup whose `waiting` count holds this task */
	u64 run_cgid;		/* cpu cgroup counted in nr_runnable */
	u64 started;		/* ops.running timestamp, for charging runtime */
	u64 bw_since;		/* runtime before this is charged to cpu.max already */
	u64 queued_at;		/* when it last entered BE_DSQ */
	u64 key;		/* deadline (SLO) or BE_KEY while running */
	bool runnable;
};

/* Per-cgroup scheduling state, keyed by cgroup id. */
struct cg_ctx {
	u32 weight;		/* cpu.weight, 1..10000 */
	s32 nr_runnable;
	u64 quota_ns;		/* cpu.max quota per period; 0 = unlimited */
	u64 period_ns;
	u64 period_start;
	u64 period_used;
	u64 usage;		/* decaying CPU use for the SLO penalty */
	u64 usage_stamp;
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct task_ctx);
} task_ctxs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, u64);
	__type(value, struct cg_ctx);
} cg_ctxs SEC(".maps");

/* Deadline of the task each CPU runs; 0 when idle. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_CPUS);
	__type(key, u32);
	__type(value, u64);
} cpu_keys SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_NR);
	__type(key, u32);
	__type(value, u64);
} stats SEC(".maps");

struct unthrottle_timer {
	struct bpf_timer timer;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct unthrottle_timer);
} timers SEC(".maps");

static __always_inline void stat_inc(u32 idx)
{
	u64 *c = bpf_map_lookup_elem(&stats, &idx);

	if (c)
		(*c)++;
}

/* Start the unthrottle timer unless it is pending (see unthrottle_timer_fn). */
static __always_inline void arm_unthrottle_timer(void)
{
	u32 zero = 0;
	struct unthrottle_timer *ut;

	if (__sync_lock_test_and_set(&timer_armed, 1))
		return;
	ut = bpf_map_lookup_elem(&timers, &zero);
	if (ut)
		bpf_timer_start(&ut->timer, TIMER_PERIOD_NS, 0);
}

static __always_inline struct task_struct___scx *scx(struct task_struct *p)
{
	return (struct task_struct___scx *)p;
}

/* The cgroup2 cgroup a task is in: what SLOs and latency stats key on. */
static __always_inline u64 task_cgid(struct task_struct *p)
{
	return p->cgroups->dfl_cgrp->kn->id;
}

/* The cgroup whose cpu.weight/cpu.max apply: the task's cpu controller css. */
static __always_inline u64 task_cpu_cgid(struct task_struct *p)
{
	return p->cgroups->subsys[bpf_core_enum_value(enum cgroup_subsys_id, cpu_cgrp_id)]->cgroup->kn->id;
}

static __always_inline struct task_ctx *tctx_of(struct task_struct *p)
{
	struct task_ctx *t = bpf_task_storage_get(&task_ctxs, p, NULL, BPF_LOCAL_STORAGE_GET_F_CREATE);

	if (!t)
		stat_inc(STAT_NO_CTX);
	return t;
}

/* Lookup, creating a default entry for cgroups we have not seen yet. */
static __always_inline struct cg_ctx *cgctx_of(u64 cgid)
{
	struct cg_ctx *c = bpf_map_lookup_elem(&cg_ctxs, &cgid);
	struct cg_ctx init = { .weight = 100 };

	if (c)
		return c;
	bpf_map_update_elem(&cg_ctxs, &cgid, &init, BPF_NOEXIST);
	c = bpf_map_lookup_elem(&cg_ctxs, &cgid);
	if (!c)
		stat_inc(STAT_NO_CTX);
	return c;
}


static __always_inline u64 min64(u64 a, u64 b) { return a < b ? a : b; }
static __always_inline u64 max64(u64 a, u64 b) { return a > b ? a : b; }

/* Decay usage linearly over the window, then add what just ran. */
static __always_inline void usage_charge(struct cg_ctx *c, u64 now, u64 ran)
{
	u64 elapsed = now - c->usage_stamp;

	if (elapsed >= USAGE_WINDOW_NS)
		c->usage = 0;
	else
		c->usage -= c->usage * elapsed / USAGE_WINDOW_NS;
	c->usage_stamp = now;
	c->usage += ran;
}

/* penalty = lag_max * (CPUs used over the window) * 100 / importance. */
static __always_inline u64 penalty(u64 cgid, const struct slo_entry *slo)
{
	struct cg_ctx *c = bpf_map_lookup_elem(&cg_ctxs, &cgid);
	u32 imp = slo->importance ? slo->importance : 100;
	u64 p;

	if (!c)
		return 0;
	p = c->usage * 100 / imp * (lag_max_ns / NSEC_PER_USEC) / (USAGE_WINDOW_NS / NSEC_PER_USEC);
	return min64(p, lag_max_ns);
}

static __always_inline u64 slo_slice(const struct slo_entry *slo)
{
	return min64(max64(slo->budget_ns, slo_slice_min_ns), slo_slice_max_ns);
}

/* A cgroup over its cpu.max quota in the current period. */
static __always_inline bool throttled(struct cg_ctx *c, u64 now)
{
	if (!c->quota_ns)
		return false;
	if (now - c->period_start >= c->period_ns) {
		c->period_start = now;
		c->period_used = 0;
		return false;
	}
	return c->period_used >= c->quota_ns;
}

/* Charge the runtime since the last charge to the cgroup's period. */
static __always_inline void bw_charge(struct cg_ctx *c, struct task_ctx *t, u64 now)
{
	u64 delta = now - t->bw_since;

	t->bw_since = now;
	if (now - c->period_start >= c->period_ns) {
		c->period_start = now;
		c->period_used = 0;
	}
	__sync_fetch_and_add(&c->period_used, delta);
}

static __always_inline void insert_vtime(struct task_struct *p, u64 dsq, u64 slice, u64 vtime)
{
	struct scx_bpf_dsq_insert_vtime_args args = {
		.dsq_id = dsq, .slice = slice, .vtime = vtime, .enq_flags = 0,
	};

	__scx_bpf_dsq_insert_vtime(p, &args);
}

/*
 * Best-effort virtual time. A task that slept is clamped so it banks at
 * most one slice of credit; a task that was runnable all along is not,
 * or a heavy cgroup's tasks would lose the credit their weight earned
 * whenever a light task (whose vtime moves in big steps) starts.
 */
static __always_inline u64 be_vtime(struct task_struct *p, bool slept)
{
	u64 floor = be_vnow - be_slice_ns;
	s64 behind = (s64)(scx(p)->scx.dsq_vtime - floor);

	if (slept && behind < 0)
		scx(p)->scx.dsq_vtime = floor;
	return scx(p)->scx.dsq_vtime;
}

struct victim_scan {
	u64 latest;	/* latest deadline seen so far */
	s32 cpu;	/* CPU running it, -1 if none later than the new deadline */
};

static long scan_cpu(u64 i, void *data)
{
	struct victim_scan *v = data;
	u32 key = i;
	u64 *k = bpf_map_lookup_elem(&cpu_keys, &key);

	if (k && *k > v->latest) {
		v->latest = *k;
		v->cpu = i;
	}
	return 0;
}

/*
 * Find the CPU running the latest deadline, if it is later than
 * `deadline`; -1 if none. Ties go to the current CPU (no IPI needed: the
 * wakeup usually arrives on the CPU the task last ran on). bpf_loop keeps
 * the verifier's cost independent of the CPU count.
 */
static __always_inline s32 preempt_victim(u64 deadline)
{
	struct victim_scan v = { .latest = deadline, .cpu = -1 };
	u32 self = bpf_get_smp_processor_id();
	u64 *k;

	bpf_loop(min64(scx_bpf_nr_cpu_ids(), MAX_CPUS), scan_cpu, &v, 0);
	k = bpf_map_lookup_elem(&cpu_keys, &self);
	if (v.cpu >= 0 && k && *k == v.latest)
		v.cpu = self;
	return v.cpu;
}

/*
 * The victim will run a task due at `deadline` as soon as it switches;
 * say so now, or every wakeup of a burst (a thread waking its workers)
 * would pick the same victim until it gets round to switching, and pile
 * onto one CPU while another could take some. ops.running overwrites it
 * with what the CPU really runs.
 */
static __always_inline void claim_cpu(s32 cpu, u64 deadline)
{
	u32 key = cpu;
	u64 *k = bpf_map_lookup_elem(&cpu_keys, &key);

	if (k)
		*k = deadline;
}

/* Wait bookkeeping mirrors bpf/runqueue: start at runnable/preempted, end at running. */
static __always_inline void start_wait(struct task_struct *p, struct task_ctx *t, u64 now)
{
	struct cg_stats *s;

	if (t->wait_since)
		return;
	t->wait_since = now;
	t->wait_cgid = task_cgid(p);
	s = cg_stats_get(t->wait_cgid);
	if (s)
		__sync_fetch_and_add(&s->waiting, 1);
}

static __always_inline void end_wait(struct task_struct *p, struct task_ctx *t, u64 now)
{
	struct cg_stats *s, *from;
	struct slo_entry *slo;
	u64 lat, cgid;
	u32 *bit;
	int r;

	if (!t->wait_since)
		return;
	lat = now - t->wait_since;
	t->wait_since = 0;
	from = bpf_map_lookup_elem(&cgroup_stats, &t->wait_cgid);
	if (from)
		__sync_fetch_and_add(&from->waiting, -1);

	cgid = task_cgid(p);
	s = cg_stats_get(cgid);
	if (!s)
		return;
	hist_record(s, lat);
	slo = bpf_map_lookup_elem(&slos, &cgid);
	if (!slo)
		return;
	bit = bpf_map_lookup_elem(&overload, &slo->slot);
	if (!bit)
		return;
	r = slo_judge(s, slo, lat, now, *bit);
	if (r >= 0)
		*bit = r;
}

s32 BPF_STRUCT_OPS(slo_select_cpu, struct task_struct *p, s32 prev_cpu, u64 wake_flags)
{
	bool is_idle = false;
	s32 cpu;
	u64 cgid, slice = be_slice_ns;
	struct cg_ctx *c;
	struct slo_entry *slo;

	cpu = scx_bpf_select_cpu_dfl(p, prev_cpu, wake_flags, &is_idle);
	if (!is_idle)
		return cpu;
	c = bpf_map_lookup_elem(&cg_ctxs, &(u64){ task_cpu_cgid(p) });
	if (c && throttled(c, scx_bpf_now()))
		return cpu;	/* ops.enqueue parks it */
	/* An idle CPU: run there now, whatever the task's class. */
	cgid = task_cgid(p);
	slo = bpf_map_lookup_elem(&slos, &cgid);
	if (slo) {
		struct task_ctx *t = tctx_of(p);

		slice = slo_slice(slo);
		if (t)
			t->key = scx_bpf_now() + slo->budget_ns;
	}
	scx_bpf_dsq_insert___v2(p, SCX_DSQ_LOCAL, slice, 0);
	stat_inc(STAT_DIRECT);
	return cpu;
}

/*
 * No CPU is idle and an SLO task due at `deadline` is waking up on
 * `victim`'s account (see preempt_victim). If nothing queued is due
 * sooner, hand it to that CPU directly: its local DSQ with
 * SCX_ENQ_PREEMPT, which also cuts the running slice. Returns true if it
 * did; otherwise the caller queues the task and kicks the victim.
 */
static __always_inline bool preempt_direct(struct task_struct *p, s32 victim, u64 deadline, u64 slice)
{
	struct task_struct *head = scx_bpf_dsq_peek(SLO_DSQ);

	if (head && (s64)(scx(head)->scx.dsq_vtime - deadline) <= 0)
		return false;
	if (!bpf_cpumask_test_cpu(victim, scx(p)->cpus_ptr))
		return false;
	return scx_bpf_dsq_insert___v2(p, SCX_DSQ_LOCAL_ON | victim, slice, SCX_ENQ_PREEMPT);
}

void BPF_STRUCT_OPS(slo_enqueue, struct task_struct *p, u64 enq_flags)
{
	u64 now = scx_bpf_now(), cgid = task_cgid(p), deadline;
	struct slo_entry *slo = bpf_map_lookup_elem(&slos, &cgid);
	struct cg_ctx *c = cgctx_of(task_cpu_cgid(p));
	struct task_ctx *t = tctx_of(p);
	s32 cpu, victim;

	if (c && throttled(c, now)) {
		insert_vtime(p, THROTTLED_DSQ, 0, now);
		next_unthrottle = min64(next_unthrottle, c->period_start + c->period_ns);
		stat_inc(STAT_THROTTLE);
		arm_unthrottle_timer();
		return;
	}
	if (slo) {
		deadline = now + slo->budget_ns + penalty(cgid, slo);
		if (t)
			t->key = deadline;
		stat_inc(STAT_ENQ_SLO);
		cpu = scx_bpf_pick_idle_cpu(scx(p)->cpus_ptr, 0);
		if (cpu >= 0) {
			insert_vtime(p, SLO_DSQ, slo_slice(slo), deadline);
			scx_bpf_kick_cpu(cpu, SCX_KICK_IDLE);
			stat_inc(STAT_KICK_IDLE);
			return;
		}
		victim = preempt_victim(deadline);
		if (victim >= 0) {
			stat_inc(STAT_KICK_PREEMPT);
			if (victim == bpf_get_smp_processor_id())
				stat_inc(STAT_PREEMPT_LOCAL);
			claim_cpu(victim, deadline);
			if (victim == bpf_get_smp_processor_id() &&
			    preempt_direct(p, victim, deadline, slo_slice(slo)))
				return;
		}
		insert_vtime(p, SLO_DSQ, slo_slice(slo), deadline);
		if (victim >= 0)
			scx_bpf_kick_cpu(victim, SCX_KICK_PREEMPT);
		return;
	} else {
		if (!scx_bpf_dsq_nr_queued(BE_DSQ))
			be_since = now;	/* the bound counts from when BE work appears */
		if (t)
			t->queued_at = now;
		insert_vtime(p, BE_DSQ, be_slice_ns, be_vtime(p, enq_flags & SCX_ENQ_WAKEUP));
		stat_inc(STAT_ENQ_BE);
	}

	cpu = scx_bpf_pick_idle_cpu(scx(p)->cpus_ptr, 0);
	if (cpu >= 0) {
		scx_bpf_kick_cpu(cpu, SCX_KICK_IDLE);
		stat_inc(STAT_KICK_IDLE);
	}
}

/* Move parked tasks whose cgroup's cpu.max period has ended back to their queue. */
static __always_inline void unthrottle(u64 now)
{
	struct bpf_iter_scx_dsq it;
	struct task_struct *p;
	u64 next = ~0ULL;

	if (now < next_unthrottle || !scx_bpf_dsq_nr_queued(THROTTLED_DSQ))
		return;
	next_unthrottle = ~0ULL;
	bpf_iter_scx_dsq_new(&it, THROTTLED_DSQ, 0);
	while ((p = bpf_iter_scx_dsq_next(&it))) {
		struct cg_ctx *c = bpf_map_lookup_elem(&cg_ctxs, &(u64){ task_cpu_cgid(p) });
		u64 cgid = task_cgid(p);
		struct slo_entry *slo;

		if (c && throttled(c, now)) {
			next = min64(next, c->period_start + c->period_ns);
			continue;
		}
		slo = bpf_map_lookup_elem(&slos, &cgid);
		if (slo) {
			scx_bpf_dsq_move_set_vtime(&it, now + slo->budget_ns);
			scx_bpf_dsq_move_vtime(&it, p, SLO_DSQ, 0);
		} else {
			scx_bpf_dsq_move_set_vtime(&it, be_vtime(p, true));
			struct task_ctx *t = bpf_task_storage_get(&task_ctxs, p, NULL, 0);

			if (t)
				t->queued_at = now;
			scx_bpf_dsq_move_vtime(&it, p, BE_DSQ, 0);
		}
		stat_inc(STAT_UNTHROTTLE);
	}
	bpf_iter_scx_dsq_destroy(&it);
	next_unthrottle = min64(next_unthrottle, next);
}

/*
 * Virtual time alone cannot bound a best-effort task's wait: a nice 19
 * task (weight 1) among a hundred nice 0 ones may wait longer than the
 * sched_ext watchdog allows (timeout_ms), and the kernel would eject us.
 * So every 100 ms one dispatching CPU scans BE_DSQ and runs, out of
 * order, the task that has waited longest, if that is over be_starve
 * (500 ms). Every
 * best-effort task thus gets a slice at least about every be_starve,
 * whatever its weight; with many starving tasks, one per 100 ms.
 */
/* Oldest queued_at among BE_DSQ tasks allowed on `cpu`; ~0 if none. */
static __always_inline u64 oldest_be_wait(s32 cpu)
{
	struct bpf_iter_scx_dsq it;
	struct task_struct *p;
	u64 oldest = ~0ULL;

	bpf_iter_scx_dsq_new(&it, BE_DSQ, 0);
	while ((p = bpf_iter_scx_dsq_next(&it))) {
		struct task_ctx *t = bpf_task_storage_get(&task_ctxs, p, NULL, 0);

		if (t && t->queued_at < oldest && bpf_cpumask_test_cpu(cpu, scx(p)->cpus_ptr))
			oldest = t->queued_at;
	}
	bpf_iter_scx_dsq_destroy(&it);
	return oldest;
}

static __always_inline bool rescue(s32 cpu, u64 now)
{
	struct bpf_iter_scx_dsq it;
	struct task_struct *p;
	bool moved = false;
	u64 oldest;

	if (now - last_rescue < 100 * NSEC_PER_MSEC)
		return false;
	last_rescue = now;
	oldest = oldest_be_wait(cpu);
	if (oldest == ~0ULL || now - oldest < be_starve_ns)
		return false;
	/*
	 * Second pass: move the task that has waited longest to this CPU.
	 * Only tasks allowed here count: moving a per-CPU kthread to another
	 * CPU's local DSQ is a runtime error that ejects the scheduler.
	 */
	bpf_iter_scx_dsq_new(&it, BE_DSQ, 0);
	while ((p = bpf_iter_scx_dsq_next(&it))) {
		struct task_ctx *t = bpf_task_storage_get(&task_ctxs, p, NULL, 0);

		if (!t || t->queued_at != oldest || !bpf_cpumask_test_cpu(cpu, scx(p)->cpus_ptr))
			continue;
		if (scx_bpf_dsq_move(&it, p, SCX_DSQ_LOCAL, 0)) {
			moved = true;
			stat_inc(STAT_RESCUE);
		}
		break;
	}
	bpf_iter_scx_dsq_destroy(&it);
	return moved;
}

void BPF_STRUCT_OPS(slo_dispatch, s32 cpu, struct task_struct *prev)
{
	u64 now = scx_bpf_now();
	struct task_struct *head;
	bool be_waiting;

	unthrottle(now);
	if (rescue(cpu, now))
		return;
	be_waiting = scx_bpf_dsq_nr_queued(BE_DSQ) > 0;
	head = scx_bpf_dsq_peek(SLO_DSQ);
	if (head) {
		u64 dl = scx(head)->scx.dsq_vtime;

		if (!be_waiting || (s64)(dl - (be_since + be_bound_ns)) <= 0) {
			if (scx_bpf_dsq_move_to_local___v2(SLO_DSQ, 0)) {
				stat_inc(STAT_DISPATCH_SLO);
				return;
			}
		} else {
			stat_inc(STAT_BE_BOUND);
		}
	}
	if (be_waiting) {
		/*
		 * be_vnow follows the head of BE_DSQ, the least-served task,
		 * so tasks run out of vtime order (rescued, or sent straight to
		 * an idle CPU) cannot drag it ahead and push every waking
		 * task behind them.
		 */
		struct task_struct *be = scx_bpf_dsq_peek(BE_DSQ);

		if (be && (s64)(scx(be)->scx.dsq_vtime - be_vnow) > 0)
			be_vnow = scx(be)->scx.dsq_vtime;
		if (scx_bpf_dsq_move_to_local___v2(BE_DSQ, 0)) {
			be_since = now;
			stat_inc(STAT_DISPATCH_BE);
			return;
		}
	}
	/* BE_DSQ drained under us: fall back to latency work if any. */
	if (head && scx_bpf_dsq_move_to_local___v2(SLO_DSQ, 0))
		stat_inc(STAT_DISPATCH_SLO);
}

void BPF_STRUCT_OPS(slo_tick, struct task_struct *p)
{
	struct task_ctx *t;
	struct cg_ctx *c;
	u64 now;

	if (test_error_knob) {
		u64 data[1] = { test_error_knob };
		static char fmt[] = "scx-slo test error knob %llu";

		scx_bpf_error_bstr(fmt, data, sizeof(data));
		return;
	}
	c = bpf_map_lookup_elem(&cg_ctxs, &(u64){ task_cpu_cgid(p) });
	if (!c || !c->quota_ns)
		return;
	t = bpf_task_storage_get(&task_ctxs, p, NULL, 0);
	if (!t)
		return;
	now = scx_bpf_now();
	/*
	 * Charge cpu.max at every tick, not only when the task stops, so
	 * tasks of one cgroup running on several CPUs see each other's use;
	 * cut the slice once over quota.
	 */
	bw_charge(c, t, now);
	if (throttled(c, now))
		scx(p)->scx.slice = 0;
}

void BPF_STRUCT_OPS(slo_runnable, struct task_struct *p, u64 enq_flags)
{
	struct task_ctx *t = tctx_of(p);
	struct cg_ctx *c;

	if (!t)
		return;
	start_wait(p, t, scx_bpf_now());
	t->run_cgid = task_cpu_cgid(p);
	t->runnable = true;
	c = cgctx_of(t->run_cgid);
	if (c)
		__sync_fetch_and_add(&c->nr_runnable, 1);
}

/*
 * ops.running and ops.stopping run under the task's rq lock but not
 * always on its CPU (a property change of a running task, such as its
 * affinity, stops and restarts it from the CPU making the change), so
 * cpu_keys is indexed by the task's CPU.
 */
void BPF_STRUCT_OPS(slo_running, struct task_struct *p)
{
	u64 now = scx_bpf_now(), cgid = task_cgid(p);
	struct task_ctx *t = tctx_of(p);
	u32 cpu = scx_bpf_task_cpu(p);
	u64 *key = bpf_map_lookup_elem(&cpu_keys, &cpu);
	bool is_slo = bpf_map_lookup_elem(&slos, &cgid) != NULL;

	if (!t)
		return;
	t->started = now;
	t->bw_since = now;
	end_wait(p, t, now);
	if (!is_slo) {
		t->key = BE_KEY;
		be_since = now;
	}
	if (key)
		*key = t->key;
}

void BPF_STRUCT_OPS(slo_stopping, struct task_struct *p, bool runnable)
{
	u64 now = scx_bpf_now(), ran, cgid = task_cgid(p);
	struct task_ctx *t = tctx_of(p);
	u32 cpu = scx_bpf_task_cpu(p);
	u64 *key = bpf_map_lookup_elem(&cpu_keys, &cpu);
	struct cg_ctx *c, *sc;
	u64 w;

	if (key)
		*key = 0;
	if (!t)
		return;
	ran = now - t->started;
	c = cgctx_of(task_cpu_cgid(p));
	if (c) {
		if (c->quota_ns)
			bw_charge(c, t, now);
		if (!bpf_map_lookup_elem(&slos, &cgid)) {
			/* The cgroup's weight is shared by its runnable tasks. */
			s32 nr = c->nr_runnable;

			nr = nr < 1 ? 1 : (nr > 1024 ? 1024 : nr);
			w = (u64)c->weight * scx(p)->scx.weight / 100;
			w = w ? w : 1;
			scx(p)->scx.dsq_vtime += ran * 100 * nr / w;
		}
	}
	sc = bpf_map_lookup_elem(&slos, &cgid) ? cgctx_of(cgid) : NULL;
	if (sc)
		usage_charge(sc, now, ran);
	if (runnable)
		start_wait(p, t, now);	/* preempted or slice over: waits again */
}

void BPF_STRUCT_OPS(slo_quiescent, struct task_struct *p, u64 deq_flags)
{
	struct task_ctx *t = bpf_task_storage_get(&task_ctxs, p, NULL, 0);
	struct cg_ctx *c;

	if (!t || !t->runnable)
		return;
	t->runnable = false;
	c = bpf_map_lookup_elem(&cg_ctxs, &t->run_cgid);
	if (c)
		__sync_fetch_and_add(&c->nr_runnable, -1);
}

s32 BPF_STRUCT_OPS(slo_init_task, struct task_struct *p, void *args)
{
	/* Start new tasks at the current virtual time, not at 0. */
	scx(p)->scx.dsq_vtime = be_vnow;
	return tctx_of(p) ? 0 : -12; /* -ENOMEM */
}

static __always_inline void set_bandwidth(struct cg_ctx *c, u64 period_us, u64 quota_us)
{
	/* cpu.max "max" arrives as quota U64_MAX (RUNTIME_INF). */
	if (quota_us == ~0ULL || !period_us) {
		c->quota_ns = 0;
		return;
	}
	c->period_ns = period_us * NSEC_PER_USEC;
	c->quota_ns = quota_us * NSEC_PER_USEC;
}

s32 BPF_STRUCT_OPS(slo_cgroup_init, struct cgroup *cgrp, struct scx_cgroup_init_args *args)
{
	u64 cgid = cgrp->kn->id;
	struct cg_ctx *c = cgctx_of(cgid);

	/* Update in place: tasks may already count in nr_runnable. */
	if (!c)
		return -12; /* -ENOMEM */
	c->weight = args->weight ? args->weight : 100;
	set_bandwidth(c, args->bw_period_us, args->bw_quota_us);
	return 0;
}

void BPF_STRUCT_OPS(slo_cgroup_exit, struct cgroup *cgrp)
{
	u64 cgid = cgrp->kn->id;

	bpf_map_delete_elem(&cg_ctxs, &cgid);
	bpf_map_delete_elem(&cgroup_stats, &cgid);
}

void BPF_STRUCT_OPS(slo_cgroup_set_weight, struct cgroup *cgrp, u32 weight)
{
	struct cg_ctx *c = cgctx_of(cgrp->kn->id);

	if (c)
		c->weight = weight ? weight : 100;
}

void BPF_STRUCT_OPS(slo_cgroup_set_bandwidth, struct cgroup *cgrp, u64 period_us, u64 quota_us, u64 burst_us)
{
	struct cg_ctx *c = cgctx_of(cgrp->kn->id);

	if (c)
		set_bandwidth(c, period_us, quota_us);
}

static long kick_idle(u64 i, void *data)
{
	scx_bpf_kick_cpu(i, SCX_KICK_IDLE);
	return 0;
}

/*
 * Every 2 ms while tasks are parked: if a throttled cgroup's period
 * ended, wake idle CPUs to dispatch (busy CPUs move parked tasks back in
 * dispatch anyway). With nothing parked the timer stays off: a needless
 * interrupt every 2 ms costs idle power on real machines and, under
 * emulation, a switch between vCPUs.
 *
 * timer_armed is cleared before the queue is checked, and enqueue parks
 * a task before setting it, so one side always sees the other.
 */
static int unthrottle_timer_fn(void *map, int *key, struct unthrottle_timer *ut)
{
	__sync_lock_test_and_set(&timer_armed, 0);
	if (scx_bpf_now() >= next_unthrottle)
		bpf_loop(min64(scx_bpf_nr_cpu_ids(), MAX_CPUS), kick_idle, NULL, 0);
	if (scx_bpf_dsq_nr_queued(THROTTLED_DSQ) && !__sync_lock_test_and_set(&timer_armed, 1))
		bpf_timer_start(&ut->timer, TIMER_PERIOD_NS, 0);
	return 0;
}

s32 BPF_STRUCT_OPS_SLEEPABLE(slo_init)
{
	u32 zero = 0;
	struct unthrottle_timer *ut;
	s32 err;

	next_unthrottle = ~0ULL;
	if ((err = scx_bpf_create_dsq(SLO_DSQ, -1)))
		return err;
	if ((err = scx_bpf_create_dsq(BE_DSQ, -1)))
		return err;
	if ((err = scx_bpf_create_dsq(THROTTLED_DSQ, -1)))
		return err;
	ut = bpf_map_lookup_elem(&timers, &zero);
	if (!ut)
		return -2; /* -ENOENT */
	bpf_timer_init(&ut->timer, &timers, CLOCK_MONOTONIC);
	return bpf_timer_set_callback(&ut->timer, unthrottle_timer_fn);
}

void BPF_STRUCT_OPS(slo_exit, struct scx_exit_info *ei)
{
	UEI_RECORD(uei, ei);
}

/* Stats of a removed cgroup that never had a cpu css (no cgroup_exit). */
SEC("tp_btf/cgroup_rmdir")
int BPF_PROG(slo_cgroup_rmdir, struct cgroup *cgrp, const char *path)
{
	u64 id;

	if (cgrp->root->hierarchy_id != 0)
		return 0;
	id = cgrp->kn->id;
	bpf_map_delete_elem(&cgroup_stats, &id);
	bpf_map_delete_elem(&cg_ctxs, &id);
	return 0;
}

SEC(".struct_ops.link")
struct sched_ext_ops scx_slo = {
	.select_cpu		= (void *)slo_select_cpu,
	.enqueue		= (void *)slo_enqueue,
	.dispatch		= (void *)slo_dispatch,
	.tick			= (void *)slo_tick,
	.runnable		= (void *)slo_runnable,
	.running		= (void *)slo_running,
	.stopping		= (void *)slo_stopping,
	.quiescent		= (void *)slo_quiescent,
	.init_task		= (void *)slo_init_task,
	.cgroup_init		= (void *)slo_cgroup_init,
	.cgroup_exit		= (void *)slo_cgroup_exit,
	.cgroup_set_weight	= (void *)slo_cgroup_set_weight,
	.cgroup_set_bandwidth	= (void *)slo_cgroup_set_bandwidth,
	.init			= (void *)slo_init,
	.exit			= (void *)slo_exit,
	/*
	 * ENQ_LAST: without it the kernel keeps running a CPU's last task
	 * past its slice without asking us, which would let a throttled
	 * cgroup run on. The loader may add SCX_OPS_SWITCH_PARTIAL.
	 */
	.flags			= SCX_OPS_ENQ_LAST,
	.timeout_ms		= 10000,	/* watchdog: a runnable task waiting longer ejects us */
	.name			= "scx_slo",
};
