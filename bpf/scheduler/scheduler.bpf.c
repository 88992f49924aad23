//go:build ignore

// SPDX-License-Identifier: GPL-2.0
/*
 * scheduler.bpf.c: scx-slo, an earliest-deadline-first sched_ext scheduler
 * for per-cgroup run-queue latency SLOs, built for many-CPU nodes.
 *
 * Two kinds of work
 * -----------------
 * A cgroup listed in the `slos` map (written by the enforcer from the SLO
 * config) is latency work: each time one of its tasks becomes runnable it
 * gets a deadline
 *
 *	deadline = now + budget + penalty(cgroup)
 *
 * and waits in its domain's SLO queue, ordered by deadline. Everything
 * else is best-effort: it waits in its domain's BE queue, ordered by
 * weighted virtual time, so cpu.weight splits what latency work leaves.
 *
 * Domains and queues
 * ------------------
 * A domain is a last-level cache (the loader reads the topology from
 * sysfs and fills cpu_dom[] and dom_cpus[] before load; one domain when
 * it cannot tell). Each domain has one SLO_DSQ and one BE_DSQ, so an
 * enqueue or dispatch locks only its own domain's queues, never a
 * machine-wide one. A CPU whose domain has nothing to run steals from the
 * other domains, SLO work first. Three kinds of task bypass the domain
 * queues:
 * - per-CPU kernel threads (ksoftirqd/N, kworker/N, ...) go straight to
 *   their CPU's local DSQ: they can run nowhere else and are short, so
 *   they wait at most one running slice (one handed back by the kernel
 *   waits in PIN_DSQ and is its CPU's first dispatch);
 * - other tasks allowed on one CPU only (taskset, the static CPU manager
 *   of Kubernetes) wait in that CPU's own queues: PIN_DSQ for SLO tasks,
 *   keyed by deadline, and PIN_BE_DSQ for best-effort ones, in arrival
 *   order; the CPU counts them as its best-effort work, beside the
 *   domain's: of the two heads the one that has waited longer goes
 *   first (pinned work always first would leave unpinned tasks to
 *   rescue alone wherever every CPU has a pinned hog);
 * - cpu.max-throttled tasks park in THROTTLED_DSQ until their period ends.
 * Local dispatches use SCX_ENQ_IMMED where the kernel has it (7.1+): if
 * the CPU turns out to be busy with a higher class (RT, deadline), the
 * kernel hands the task back with SCX_ENQ_REENQ instead of stranding it
 * behind that work, and we queue it in a shared queue. With
 * cpu_online/cpu_offline implemented, hotplug does not eject us.
 *
 * Picking the next task (dispatch)
 * --------------------------------
 * Every CPU runs EDF over three heads: its PIN_DSQ, its domain's SLO_DSQ,
 * and best-effort work (its PIN_BE_DSQ, then the domain's BE_DSQ), whose
 * deadline is be_last + be_bound, be_last being when this CPU last
 * started best-effort work (or last saw none waiting). So latency work
 * goes first, but best-effort work that can use this CPU gets it at
 * least every be_bound (40 ms): the bound holds per CPU, not per machine.
 * When even that deadline has passed (all-SLO overload), best-effort
 * work runs protected: its running key is "now", so no SLO wakeup
 * preempts it, for a window of be_guard_slice (5 ms) in which every
 * best-effort task this CPU dispatches is protected, not for one task:
 * a thread that runs 50 us to hand over to another (a language
 * runtime's scheduler, a pipeline) would otherwise use up the turn, and
 * every step of the hand-over would wait be_bound. Best-effort work
 * thus keeps at least 5 ms in every 45 (11%) of every CPU under any SLO
 * load, and SLO work waits at most 5 ms for it.
 * If nothing is runnable but the previous task, it keeps the CPU with a
 * fresh slice instead of a trip through the queues (and SCX_ENQ_LAST
 * tasks go straight back to their CPU).
 *
 * Isolation: a reserve per SLO cgroup
 * -----------------------------------
 * EDF alone has no bound under sustained overload: once deadlines are
 * missed, every later task misses too (the domino effect), and a cgroup
 * that declares a tiny budget beats everyone. So EDF is a reserve, not a
 * right: each SLO cgroup may use, per 100 ms window, its importance's
 * share of the machine (nr_cpus * importance / 1000 CPUs, at least one
 * CPU). Beyond it its tasks are queued as best-effort (weighted virtual
 * time) until its use decays. A misbehaving SLO pod therefore damages
 * others by at most its reserve, and the fairness term (penalty) orders
 * well-behaved SLO cgroups within theirs: each one's CPU use decays over
 * the window; one using a whole CPU at importance 100 has its deadlines
 * pushed back by lag_max (20 ms), at importance 1000 by 2 ms.
 *
 * Preemption
 * ----------
 * A CPU only looks for work when its task blocks or its slice ends, and
 * at HZ=250 the tick comes every 4 ms. So when an SLO task wakes and no
 * CPU it may use is idle, we look for the CPU running the latest
 * deadline among the CPUs in its cpus_ptr, the waking CPU's domain first
 * (best-effort counts as infinitely late; ties go to the waking CPU,
 * which needs no IPI). If that deadline is later than the new one, the
 * task takes the CPU: straight into the local DSQ with SCX_ENQ_PREEMPT
 * when the victim is the waking CPU, else queued in the victim's domain
 * with the victim kicked (SCX_KICK_PREEMPT). The victim is claimed at
 * once (its key takes the new deadline), so a burst of wakeups spreads.
 *
 * Worked example (2 domains of 4 CPUs)
 * ------------------------------------
 * /web has an SLO (budget 1 ms, importance 100, reserve 1 CPU) and used
 * 10% of a CPU lately; /batch runs hogs on all 8 CPUs. A /web task wakes
 * on CPU 5 (domain 1) at t=100 ms: penalty = 10% * 20 ms = 2 ms, deadline
 * 103 ms. No CPU is idle; in domain 1 all CPUs run best-effort, the tie
 * goes to CPU 5 itself, and the task preempts the hog there at once. Now
 * /web goes rogue and spins on 8 threads: after ~100 ms its use passes
 * one CPU's worth, so further wakeups queue as best-effort and share
 * with /batch by cpu.weight; meanwhile each CPU gave /batch a protected
 * slice whenever it had waited 40 ms. A hog pinned to CPU 2 waits in
 * PIN_BE_DSQ(2) and is CPU 2's best-effort work (unpinned tasks that
 * waited longer, which other CPUs may take too, go before it), so it
 * runs there at least every 40 ms.
 *
 * cpu.weight and cpu.max
 * ----------------------
 * A best-effort task's virtual time (kept in task_ctx, never in
 * dsq_vtime, which SLO deadlines and parking also use) advances by
 * runtime * 100 * nr_runnable(cgroup) / (cgroup weight * task weight /
 * 100): a cgroup's weight is shared by its runnable tasks. A task that
 * slept is clamped to at most one slice behind its domain's virtual
 * time; one that stayed runnable keeps its credit. cpu.max is a
 * hard cap: runtime is charged to the cgroup's period at every tick and
 * when a task stops; once over quota the running slice is cut and the
 * cgroup's tasks park (FIFO) in THROTTLED_DSQ until the period ends, when
 * dispatch (or a 2 ms timer, armed only while tasks are parked) moves
 * them back. A lost update of next_unthrottle costs at most 20 ms: the
 * parked queue is rescanned that often regardless. Runtime, here and in
 * the SLO reserve above, is the kernel's task clock (exec_clock), so
 * interrupt time and a VM's stolen time are charged to no one.
 *
 * Starvation
 * ----------
 * The sched_ext watchdog ejects a scheduler that leaves a runnable task
 * waiting timeout_ms (10 s here). Three bounds keep every task moving:
 * best-effort work gets each CPU every be_bound (above); pinned tasks are
 * keyed by enqueue time in their CPU's queue; and any best-effort task
 * that has waited over be_starve (500 ms), however low its weight, is run
 * out of vtime order by rescue(), one per domain per 100 ms.
 *
 * Accounting and the overload bit
 * -------------------------------
 * A wait starts when the task is woken (ops.select_cpu runs on the waking
 * CPU, before any IPI, so IPI delay counts) or preempted, and ends at
 * ops.running, or at ops.quiescent if the task leaves without running.
 * It is recorded with slo_account.h and wait_slots.h into the same maps,
 * with the same meaning, as the observe-mode tracer (bpf/runqueue): the
 * waiting count and histogram in per-CPU slots, so that no cgroup's
 * stats are written from every CPU at every wakeup; only SLO cgroups'
 * judged deadlines touch the shared entry. The overload bit is
 * also set, at enqueue and at every tick, when the domain's SLO head has
 * already waited longer than its budget: the queue says "late" before the
 * late task has run.
 */
#include "sched_ext.h"
#include "wait_slots.h"
#include "user_exit_info.h"

char LICENSE[] SEC("license") = "GPL";

#define MAX_CPUS	512
#define MAX_DOMS	64
#define NSEC_PER_USEC	1000ULL
#define NSEC_PER_MSEC	1000000ULL
#define USAGE_WINDOW_NS	(100 * NSEC_PER_MSEC)
#define TIMER_PERIOD_NS	(2 * NSEC_PER_MSEC)
#define UNTHROTTLE_RESCAN_NS (20 * NSEC_PER_MSEC)
#define RESCUE_PERIOD_NS (100 * NSEC_PER_MSEC)
#define BE_KEY		(~0ULL)	/* a running best-effort task is "infinitely late" */
#define CLOCK_MONOTONIC	1
#define PF_KTHREAD	0x00200000	/* include/linux/sched.h, unchanged since 2.6 */

/* DSQ ids: one parking queue, two per domain, one per CPU for pinned tasks. */
#define THROTTLED_DSQ	0
#define SLO_DSQ(d)	(0x100ULL + (d))
#define BE_DSQ(d)	(0x200ULL + (d))
#define PIN_DSQ(c)	(0x1000ULL + (c))	/* pinned SLO tasks, handed-back kthreads */
#define PIN_BE_DSQ(c)	(0x2000ULL + (c))	/* pinned best-effort tasks, by enqueue time */

/* Tunables, set by the loader before load (rodata). */
const volatile u64 be_slice_ns = 5 * NSEC_PER_MSEC;
const volatile u64 be_bound_ns = 40 * NSEC_PER_MSEC;
const volatile u64 be_guard_slice_ns = 5 * NSEC_PER_MSEC;
const volatile u64 lag_max_ns = 20 * NSEC_PER_MSEC;
const volatile u64 slo_slice_min_ns = 250 * NSEC_PER_USEC;
const volatile u64 slo_slice_max_ns = 5 * NSEC_PER_MSEC;
const volatile u64 be_starve_ns = 500 * NSEC_PER_MSEC;	/* see rescue() */

/*
 * Topology, filled by the loader from sysfs: the domain (LLC) of each
 * CPU, and the CPUs of each domain as a slice of dom_cpus. The defaults
 * (all zero, nr_doms 1) are one domain: correct anywhere, just unsharded.
 */
const volatile u32 nr_doms = 1;
const volatile u32 cpu_dom[MAX_CPUS];
const volatile u32 dom_first[MAX_DOMS];	/* index into dom_cpus */
const volatile u32 dom_nr[MAX_DOMS];	/* 0: the domain lists every CPU (no topology) */
const volatile u32 dom_cpus[MAX_CPUS];

/*
 * Test-only: userspace sets it non-zero and the next tick calls
 * scx_bpf_error. Its own section (map) so that userspace's
 * read-modify-write of the value cannot clobber scheduler state.
 */
volatile u32 test_error_knob SEC(".data.knob");

/* ops.exit copies the kernel's exit info here; userspace only reads it. */
UEI_DEFINE(uei);

/* Machine-wide state: only the cpu.max parking path touches it. */
u64 next_unthrottle;	/* earliest end of a parked cgroup's period (a hint) */
u64 last_unthrottle;	/* last scan of THROTTLED_DSQ */
u64 timer_armed;	/* the unthrottle timer is pending */

enum stat_idx {
	STAT_ENQ_SLO,		/* SLO task queued */
	STAT_ENQ_BE,		/* best-effort task queued */
	STAT_DIRECT,		/* dispatched straight to an idle CPU at wakeup */
	STAT_KICK_PREEMPT,	/* CPU kicked to make room for a tighter deadline */
	STAT_KICK_IDLE,		/* idle CPU woken for a queued task */
	STAT_DISPATCH_SLO,	/* SLO task picked */
	STAT_DISPATCH_BE,	/* best-effort task picked */
	STAT_BE_BOUND,		/* best-effort picked over queued SLO work (its deadline came first) */
	STAT_THROTTLE,		/* task parked because its cgroup hit cpu.max */
	STAT_UNTHROTTLE,	/* parked task moved back after its period ended */
	STAT_NO_CTX,		/* task or cgroup context missing (allocation failed) */
	STAT_RESCUE,		/* best-effort task run out of vtime order: waited be_starve */
	STAT_PREEMPT_LOCAL,	/* of STAT_KICK_PREEMPT: the victim was the waking CPU (no IPI) */
	STAT_PINNED,		/* task allowed on one CPU queued in that CPU's queue */
	STAT_KTHREAD,		/* per-CPU kthread sent to its CPU's local DSQ */
	STAT_OVER_RESERVE,	/* SLO task queued as best-effort: its cgroup used its reserve */
	STAT_STEAL,		/* task taken from another domain's queue */
	STAT_BE_GUARD,		/* best-effort dispatched protected: in the window after it waited be_bound here */
	STAT_KEEP_PREV,		/* nothing else to run: the previous task kept the CPU */
	STAT_ENQ_LAST,		/* the CPU's last runnable task sent back to it */
	STAT_REENQ,		/* task handed back by the kernel (its CPU was taken) */
	STAT_EARLY_OVERLOAD,	/* overload bit set at enqueue: the queue head was already late */
	STAT_HOTPLUG,		/* CPU went online or offline */
	STAT_PIN_PREEMPT,	/* a pinned SLO task's own CPU kicked for it (never another CPU) */
	STAT_NR,
};

/* Userspace reads the stats array size from here; it also puts the enum into BTF for bpf2go. */
const volatile enum stat_idx stat_nr = STAT_NR;

struct task_ctx {
	u64 wait_since;		/* 0 when not waiting */
	u64 wait_cgid;		/* cgroup the task waits in (wait_slots.h) */
	u64 run_exec;		/* task clock (see exec_clock) at ops.running */
	u64 bw_exec;		/* task clock up to which cpu.max is charged already */
	u64 queued_at;		/* when it last entered a BE_DSQ */
	u64 key;		/* deadline (SLO) or BE_KEY while running */
	u64 vtime;		/* best-effort virtual time (never a deadline) */
	u32 dom;		/* domain whose queue it last entered */
	u32 wait_slot;		/* waiting_slots index + 1 counting this wait; 0: wait_cgid's stats */
	bool runnable;
	bool ran_be;		/* its current or last run was as best-effort */
};

/* Per-cgroup scheduling state, in the cgroup's local storage. */
struct cg_ctx {
	u32 weight;		/* cpu.weight, 1..10000 */
	s32 nr_runnable;
	u64 quota_ns;		/* cpu.max quota per period; 0 = unlimited */
	u64 period_ns;
	u64 period_start;
	u64 period_used;
	u64 usage;		/* decaying CPU use: SLO penalty and reserve */
	u64 usage_stamp;
};

/* Per-CPU state other CPUs read (victim scans): one cache line each. */
struct cpu_ctx {
	u64 key;		/* deadline of what it runs; 0 idle, BE_KEY best-effort */
	u64 be_last;		/* best-effort last started here, or last seen none waiting */
	u64 guard;		/* the next best-effort task runs protected (be_bound hit) */
	u64 guard_end;		/* best-effort work runs protected until then */
	u64 pad[4];
};

/* Per-domain state. */
struct dom_ctx {
	u64 be_vnow;		/* virtual time of the BE head when last dispatched */
	u64 last_rescue;	/* last scan of the BE queue for starved tasks */
	u64 pad[6];
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct task_ctx);
} task_ctxs SEC(".maps");

/*
 * Cgroup local storage: it lives and dies with the cgroup, so there is no
 * table to fill up however many cgroups a node has, and no entry to
 * delete. If an allocation fails the cgroup still gets created and runs
 * with default weight and no cpu.max, counted in no_ctx: mkdir must
 * never fail because of us.
 */
struct {
	__uint(type, BPF_MAP_TYPE_CGRP_STORAGE___slo);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct cg_ctx);
} cg_ctxs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_CPUS);
	__type(key, u32);
	__type(value, struct cpu_ctx);
} cpu_ctxs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_DOMS);
	__type(key, u32);
	__type(value, struct dom_ctx);
} dom_ctxs SEC(".maps");

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

static __always_inline u64 min64(u64 a, u64 b) { return a < b ? a : b; }
static __always_inline u64 max64(u64 a, u64 b) { return a > b ? a : b; }

static __always_inline struct task_struct___scx *scx(struct task_struct *p)
{
	return (struct task_struct___scx *)p;
}

static __always_inline u32 nr_cpus(void)
{
	return min64(scx_bpf_nr_cpu_ids(), MAX_CPUS);
}

static __always_inline u32 dom_of(s32 cpu)
{
	u32 d;

	if (cpu < 0 || cpu >= MAX_CPUS)
		return 0;
	d = cpu_dom[cpu];
	return d < MAX_DOMS ? d : 0;
}

static __always_inline struct cpu_ctx *cpu_ctx_of(s32 cpu)
{
	u32 key = cpu;

	return bpf_map_lookup_elem(&cpu_ctxs, &key);
}

static __always_inline struct dom_ctx *dom_ctx_of(u32 dom)
{
	return bpf_map_lookup_elem(&dom_ctxs, &dom);
}

/* SCX_ENQ_IMMED where the kernel has it (7.1+), else 0 (see the essay). */
static __always_inline u64 enq_immed(void)
{
	if (bpf_core_enum_value_exists(enum scx_enq_flags___slo, SCX_ENQ_IMMED___slo))
		return bpf_core_enum_value(enum scx_enq_flags___slo, SCX_ENQ_IMMED___slo);
	return 0;
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

/* next_unthrottle = min(next_unthrottle, at), without losing a racing update. */
static __always_inline void note_unthrottle(u64 at)
{
	int i;

	bpf_for(i, 0, 4) {
		u64 old = next_unthrottle;

		if (at >= old || __sync_val_compare_and_swap(&next_unthrottle, old, at) == old)
			return;
	}
}

/* The cgroup2 cgroup a task is in: what SLOs and latency stats key on. */
static __always_inline u64 task_cgid(struct task_struct *p)
{
	return p->cgroups->dfl_cgrp->kn->id;
}

/*
 * The cgroup whose cpu.weight/cpu.max apply: that of the task's task
 * group, as the kernel's scheduler itself sees it. A cgroup move changes
 * p->sched_task_group between dequeueing and re-enqueueing the task (so
 * ops.quiescent still sees the group ops.runnable counted the task in),
 * while p->cgroups has changed before. An autogroup's task group has no
 * cgroup: that is the root, which is also what the cpu css names then.
 */
static __always_inline struct cgroup *task_cpu_cgrp(struct task_struct *p)
{
	struct task_group *tg = scx(p)->sched_task_group;
	struct cgroup *cg = tg ? tg->css.cgroup : NULL;

	if (cg)
		return cg;
	return p->cgroups->subsys[bpf_core_enum_value(enum cgroup_subsys_id, cpu_cgrp_id)]->cgroup;
}

static __always_inline struct task_ctx *tctx_of(struct task_struct *p)
{
	struct task_ctx *t = bpf_task_storage_get(&task_ctxs, p, NULL, BPF_LOCAL_STORAGE_GET_F_CREATE);

	if (!t)
		stat_inc(STAT_NO_CTX);
	return t;
}

/* A cgroup's context, created with defaults if ops.cgroup_init has not run. */
static __always_inline struct cg_ctx *cgctx_of(struct cgroup *cg)
{
	struct cg_ctx init = { .weight = 100 };
	struct cg_ctx *c;

	if (!cg)
		return NULL;
	c = bpf_cgrp_storage_get(&cg_ctxs, cg, &init, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!c)
		stat_inc(STAT_NO_CTX);
	return c;
}

/* A cgroup's context if it has one: for paths that only read it. */
static __always_inline struct cg_ctx *cgctx_peek(struct cgroup *cg)
{
	return cg ? bpf_cgrp_storage_get(&cg_ctxs, cg, NULL, 0) : NULL;
}

/* Per-CPU kernel threads can run nowhere else and must not wait long. */
static __always_inline bool is_pcpu_kthread(struct task_struct *p)
{
	return (scx(p)->flags & PF_KTHREAD) && scx(p)->nr_cpus_allowed == 1;
}

/* CPU use over the last window, decayed to now without writing it back. */
static __always_inline u64 usage_at(const struct cg_ctx *c, u64 now)
{
	u64 elapsed = now - c->usage_stamp;

	if (elapsed >= USAGE_WINDOW_NS)
		return 0;
	return c->usage - c->usage * elapsed / USAGE_WINDOW_NS;
}

/* Decay usage linearly over the window, then add what just ran. */
static __always_inline void usage_charge(struct cg_ctx *c, u64 now, u64 ran)
{
	c->usage = usage_at(c, now) + ran;
	c->usage_stamp = now;
}

static __always_inline u32 importance_of(const struct slo_entry *slo)
{
	return slo->importance ? slo->importance : 100;
}

/* penalty = lag_max * (CPUs used over the window) * 100 / importance. */
static __always_inline u64 penalty(const struct cg_ctx *sc, const struct slo_entry *slo, u64 now)
{
	u64 p = usage_at(sc, now) * 100 / importance_of(slo) *
		(lag_max_ns / NSEC_PER_USEC) / (USAGE_WINDOW_NS / NSEC_PER_USEC);

	return min64(p, lag_max_ns);
}

/* An SLO cgroup past its reserve: nr_cpus * importance / 1000 CPUs, at least one. */
static __always_inline bool over_reserve(const struct cg_ctx *sc, const struct slo_entry *slo, u64 now)
{
	u64 reserve = (u64)nr_cpus() * importance_of(slo) * USAGE_WINDOW_NS / 1000;

	return usage_at(sc, now) >= max64(reserve, USAGE_WINDOW_NS);
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

/*
 * What p has run in all, by the kernel's task clock: se.sum_exec_runtime,
 * which update_curr_scx advances before ops.tick and ops.stopping run.
 * Runtime is charged from it, not from wall time since ops.running, so
 * interrupt time and a VM's stolen time (IRQ_TIME_ACCOUNTING,
 * PARAVIRT_TIME_ACCOUNTING), which the task never had, count against no
 * reserve, virtual time or cpu.max quota: the time the kernel's own
 * accounting (and CFS bandwidth control) charges.
 */
static __always_inline u64 exec_clock(struct task_struct *p)
{
	return scx(p)->se.sum_exec_runtime;
}

/*
 * Task-clock time since *mark, moving the mark; 0 if the clock is behind,
 * or if there is no mark yet (never seen running: its whole past is not
 * this run's).
 */
static __always_inline u64 exec_since(struct task_struct *p, u64 *mark)
{
	u64 clock = exec_clock(p), d = clock - *mark;
	bool marked = *mark;

	*mark = clock;
	return marked && (s64)d > 0 ? d : 0;
}

/* Charge the runtime since the last charge to the cgroup's period. */
static __always_inline void bw_charge(struct cg_ctx *c, struct task_struct *p, struct task_ctx *t, u64 now)
{
	u64 delta = exec_since(p, &t->bw_exec);

	if (now - c->period_start >= c->period_ns) {
		c->period_start = now;
		c->period_used = 0;
	}
	__sync_fetch_and_add(&c->period_used, delta);
}

static __always_inline void insert_vtime(struct task_struct *p, u64 dsq, u64 slice, u64 vtime)
{
	slo_dsq_insert_vtime(p, dsq, slice, vtime, 0);
}

/*
 * Best-effort virtual time in domain `dom`. Each domain's virtual time
 * runs at its own pace, so a task entering another domain keeps its lag
 * relative to the old domain's virtual time (at most be_bound either
 * way), not the absolute value, which could put it far ahead of (or
 * behind) everyone there. A task that slept banks at most one slice of
 * credit; one that stayed runnable in its domain keeps its credit, or a
 * heavy cgroup's tasks would lose what their weight earned whenever a
 * light task (whose vtime moves in big steps) heads the queue.
 */
static __always_inline u64 be_vtime(struct task_ctx *t, u32 dom, bool slept)
{
	struct dom_ctx *d = dom_ctx_of(dom), *old;
	u64 floor;

	if (!d)
		return t->vtime;
	if (t->dom != dom) {
		s64 lag = 0;

		old = dom_ctx_of(t->dom);
		if (old)
			lag = (s64)(t->vtime - old->be_vnow);
		if (lag > (s64)be_bound_ns)
			lag = be_bound_ns;
		if (lag < -(s64)be_bound_ns)
			lag = -(s64)be_bound_ns;
		t->vtime = d->be_vnow + lag;
		t->dom = dom;
	}
	if (!slept)
		return t->vtime;
	floor = d->be_vnow - be_slice_ns;
	if ((s64)(t->vtime - floor) < 0)
		t->vtime = floor;
	return t->vtime;
}

/* Best candidate so far in a victim scan. */
struct victim {
	u64 deadline;	/* of the waking task: a victim must run something later */
	u64 key;	/* the best victim's running deadline */
	s32 cpu;	/* -1: none later than the new deadline */
	u32 rank;	/* 2 the waking CPU, 1 its domain, 0 elsewhere */
};

static __always_inline void consider_victim(struct victim *v, struct task_struct *p, s32 cpu, u32 rank)
{
	struct cpu_ctx *cc;

	if (cpu < 0 || cpu >= MAX_CPUS || !bpf_cpumask_test_cpu(cpu, scx(p)->cpus_ptr))
		return;
	cc = cpu_ctx_of(cpu);
	if (!cc || cc->key <= v->deadline)
		return;
	/* Later wins; among equals (several CPUs on best-effort work) the closer. */
	if (v->cpu >= 0 && (cc->key < v->key || (cc->key == v->key && rank <= v->rank)))
		return;
	v->key = cc->key;
	v->cpu = cpu;
	v->rank = rank;
}

/*
 * The CPU running the latest deadline later than `deadline` among those
 * p may use, or -1: the waking CPU's domain first, the rest only if the
 * domain has no victim. bpf_for keeps the verifier's cost flat in the
 * CPU count; the scan touches one cache line per CPU of the domain.
 */
static __always_inline s32 preempt_victim(struct task_struct *p, u64 deadline)
{
	s32 self = bpf_get_smp_processor_id();
	u32 dom = dom_of(self), first = dom_first[dom], nr = dom_nr[dom];
	struct victim v = { .deadline = deadline, .cpu = -1 };
	int i;

	consider_victim(&v, p, self, 2);
	if (v.cpu >= 0 && v.key == BE_KEY)
		return v.cpu;
	if (nr && first < MAX_CPUS) {
		bpf_for(i, 0, nr) {
			u32 idx = first + i;

			if (idx >= MAX_CPUS)
				break;
			consider_victim(&v, p, dom_cpus[idx], 1);
		}
		if (v.cpu >= 0)
			return v.cpu;
	}
	bpf_for(i, 0, nr_cpus()) {
		if (nr && dom_of(i) == dom)
			continue;
		consider_victim(&v, p, i, 0);
	}
	return v.cpu;
}

/*
 * The victim will run a task due at `deadline` as soon as it switches;
 * say so now, or every wakeup of a burst would pick the same victim.
 * ops.running overwrites it with what the CPU really runs.
 */
static __always_inline void claim_cpu(s32 cpu, u64 deadline)
{
	struct cpu_ctx *cc = cpu_ctx_of(cpu);

	if (cc)
		cc->key = deadline;
}

/*
 * Wait bookkeeping mirrors bpf/runqueue: start at wakeup/preemption, end
 * at running; counts and histograms go to this CPU's slots (wait_slots.h),
 * so a busy cgroup's stats line is not written from every CPU it runs on.
 */
static __always_inline void start_wait(struct task_struct *p, struct task_ctx *t, u64 now)
{
	struct cg_stats *s;

	if (t->wait_since)
		return;
	t->wait_since = now;
	t->wait_cgid = task_cgid(p);
	t->wait_slot = slot_count_waiting(t->wait_cgid, &s);
}

/* A wait that ends without the task running (it left, or was dequeued). */
static __always_inline void cancel_wait(struct task_ctx *t)
{
	struct cg_stats *from;

	if (!t->wait_since)
		return;
	t->wait_since = 0;
	if (t->wait_slot) {
		slot_uncount_waiting(t->wait_slot);
		return;
	}
	from = bpf_map_lookup_elem(&cgroup_stats, &t->wait_cgid);
	if (from)
		__sync_fetch_and_add(&from->waiting, -1);
}

/* The wait is charged to the cgroup the task waited in, as the tracer does. */
static __always_inline void end_wait(struct task_struct *p, struct task_ctx *t, u64 now)
{
	struct cg_stats *s = NULL;
	struct slo_entry *slo;
	struct hist_slot *h;
	u64 lat, cgid;
	u32 *bit;
	int r;

	if (!t->wait_since)
		return;
	lat = now - t->wait_since;
	cgid = t->wait_cgid;
	cancel_wait(t);

	h = slot_hist_of(cgid, p);
	if (h) {
		slot_hist_record(h, lat);
	} else {
		s = cg_stats_get(cgid);
		if (!s)
			return;
		hist_record(s, lat);
	}
	slo = bpf_map_lookup_elem(&slos, &cgid);
	if (!slo)
		return;
	if (!s)
		s = cg_stats_get(cgid);
	if (!s)
		return;
	bit = bpf_map_lookup_elem(&overload, &slo->slot);
	if (!bit)
		return;
	r = slo_judge(s, slo, lat, now, *bit);
	if (r >= 0)
		*bit = r;
}

/*
 * The domain's SLO head has waited longer than its budget: its cgroup is
 * late now, so raise its overload bit before the late task even runs
 * (the miss-rate EWMAs, fed when it does run, decide when to clear it).
 * The wait is compared with the budget, not the deadline, which the
 * fairness penalty may push later than the budget allows.
 */
static __always_inline void flag_late_head(u64 dsq, u64 now)
{
	struct task_struct *head = slo_dsq_peek(dsq);
	struct slo_entry *slo;
	struct task_ctx *t;
	u64 cgid;
	u32 *bit;

	if (!head)
		return;
	t = bpf_task_storage_get(&task_ctxs, head, NULL, 0);
	if (!t || !t->wait_since)
		return;
	cgid = task_cgid(head);
	slo = bpf_map_lookup_elem(&slos, &cgid);
	if (!slo || now - t->wait_since <= slo->budget_ns)
		return;
	bit = bpf_map_lookup_elem(&overload, &slo->slot);
	if (bit && !*bit) {
		*bit = 1;
		stat_inc(STAT_EARLY_OVERLOAD);
	}
}

s32 BPF_STRUCT_OPS(slo_select_cpu, struct task_struct *p, s32 prev_cpu, u64 wake_flags)
{
	u64 now = slo_now(), cgid, slice = be_slice_ns;
	struct task_ctx *t = tctx_of(p);
	bool is_idle = false;
	struct slo_entry *slo;
	struct cg_ctx *c;
	s32 cpu;

	/* This runs on the waking CPU before any IPI: the wait starts now. */
	if (t)
		start_wait(p, t, now);
	cpu = scx_bpf_select_cpu_dfl(p, prev_cpu, wake_flags, &is_idle);
	if (!is_idle)
		return cpu;
	c = cgctx_peek(task_cpu_cgrp(p));
	if (c && throttled(c, now))
		return cpu;	/* ops.enqueue parks it */
	/* An idle CPU: run there now, whatever the task's class. */
	cgid = task_cgid(p);
	slo = bpf_map_lookup_elem(&slos, &cgid);
	if (slo)
		slice = slo_slice(slo);
	if (t)
		t->key = slo ? now + slo->budget_ns : BE_KEY;
	slo_dsq_insert(p, SCX_DSQ_LOCAL, slice, enq_immed());
	stat_inc(STAT_DIRECT);
	return cpu;
}

/*
 * No CPU is idle and an SLO task due at `deadline` takes the waking CPU
 * (see preempt_victim). If nothing queued in its domain is due sooner,
 * hand it over directly: the local DSQ with SCX_ENQ_PREEMPT, which also
 * cuts the running slice. Returns true if it did.
 */
static __always_inline bool preempt_direct(struct task_struct *p, s32 victim, u64 deadline, u64 slice)
{
	struct task_struct *head = slo_dsq_peek(SLO_DSQ(dom_of(victim)));

	if (head && (s64)(scx(head)->scx.dsq_vtime - deadline) <= 0)
		return false;
	if (!bpf_cpumask_test_cpu(victim, scx(p)->cpus_ptr))
		return false;
	return slo_dsq_insert(p, SCX_DSQ_LOCAL_ON | victim, slice, SCX_ENQ_PREEMPT | enq_immed());
}

/* Wake an idle CPU p may use, preferring domain `dom`; returns it or -1. */
static __always_inline s32 kick_idle_for(struct task_struct *p)
{
	s32 cpu = scx_bpf_pick_idle_cpu(scx(p)->cpus_ptr, 0);

	if (cpu >= 0) {
		scx_bpf_kick_cpu(cpu, SCX_KICK_IDLE);
		stat_inc(STAT_KICK_IDLE);
	}
	return cpu;
}

/* A task allowed on one CPU: that CPU's queue, keyed for EDF against its domain. */
static __always_inline void enqueue_pinned(struct task_struct *p, struct task_ctx *t, u64 key, u64 slice, bool slo)
{
	s32 cpu = scx_bpf_task_cpu(p);
	struct cpu_ctx *cc;

	/* Best-effort ones wait in their own queue: the CPU's best-effort work. */
	insert_vtime(p, slo || is_pcpu_kthread(p) ? PIN_DSQ(cpu) : PIN_BE_DSQ(cpu), slice, key);
	stat_inc(STAT_PINNED);
	if (scx_bpf_test_and_clear_cpu_idle(cpu)) {
		scx_bpf_kick_cpu(cpu, SCX_KICK_IDLE);
		stat_inc(STAT_KICK_IDLE);
		return;
	}
	cc = cpu_ctx_of(cpu);
	if (slo && cc && cc->key > key) {
		cc->key = key;
		scx_bpf_kick_cpu(cpu, SCX_KICK_PREEMPT);
		stat_inc(STAT_PIN_PREEMPT);
	}
}

static __always_inline void enqueue_slo(struct task_struct *p, struct task_ctx *t,
					const struct slo_entry *slo, u64 deadline, u64 now)
{
	u64 slice = slo_slice(slo);
	s32 self = bpf_get_smp_processor_id(), cpu, victim;

	stat_inc(STAT_ENQ_SLO);
	flag_late_head(SLO_DSQ(dom_of(scx_bpf_task_cpu(p))), now);
	cpu = kick_idle_for(p);
	if (cpu >= 0) {
		insert_vtime(p, SLO_DSQ(dom_of(cpu)), slice, deadline);
		return;
	}
	victim = preempt_victim(p, deadline);
	if (victim < 0) {
		insert_vtime(p, SLO_DSQ(dom_of(scx_bpf_task_cpu(p))), slice, deadline);
		return;
	}
	stat_inc(STAT_KICK_PREEMPT);
	claim_cpu(victim, deadline);
	if (victim == self) {
		stat_inc(STAT_PREEMPT_LOCAL);
		if (preempt_direct(p, victim, deadline, slice))
			return;
	}
	insert_vtime(p, SLO_DSQ(dom_of(victim)), slice, deadline);
	scx_bpf_kick_cpu(victim, SCX_KICK_PREEMPT);
}

static __always_inline void enqueue_be(struct task_struct *p, struct task_ctx *t, u64 enq_flags, u64 now)
{
	s32 cpu = kick_idle_for(p);
	u32 dom = dom_of(cpu >= 0 ? cpu : scx_bpf_task_cpu(p));
	u64 vtime = scx(p)->scx.dsq_vtime;

	stat_inc(STAT_ENQ_BE);
	if (t) {
		t->queued_at = now;
		vtime = be_vtime(t, dom, enq_flags & SCX_ENQ_WAKEUP);
	}
	insert_vtime(p, BE_DSQ(dom), be_slice_ns, vtime);
}

void BPF_STRUCT_OPS(slo_enqueue, struct task_struct *p, u64 enq_flags)
{
	u64 now = slo_now(), cgid = task_cgid(p);
	struct slo_entry *slo = bpf_map_lookup_elem(&slos, &cgid);
	struct cg_ctx *c = cgctx_of(task_cpu_cgrp(p));
	struct task_ctx *t = tctx_of(p);
	struct cg_ctx *sc = NULL;
	u64 deadline = 0;

	if (c && throttled(c, now)) {
		/* FIFO: parking must not touch the task's virtual time. */
		slo_dsq_insert(p, THROTTLED_DSQ, 0, 0);
		note_unthrottle(c->period_start + c->period_ns);
		stat_inc(STAT_THROTTLE);
		arm_unthrottle_timer();
		return;
	}
	if (slo) {
		sc = cgctx_of(p->cgroups->dfl_cgrp);
		if (sc && over_reserve(sc, slo, now)) {
			stat_inc(STAT_OVER_RESERVE);
			slo = NULL;	/* best-effort until its use decays */
		} else {
			deadline = now + slo->budget_ns + (sc ? penalty(sc, slo, now) : 0);
		}
	}
	if (t)
		t->key = slo ? deadline : BE_KEY;
	if (enq_flags & SCX_ENQ_REENQ) {
		/* Its CPU was taken (RT, deadline, hotplug): queue it, never local again. */
		stat_inc(STAT_REENQ);
	} else if (enq_flags & SCX_ENQ_LAST) {
		/* Nothing else wants this CPU: keep running, no trip through the queues. */
		slo_dsq_insert(p, SCX_DSQ_LOCAL, slo ? slo_slice(slo) : be_slice_ns, enq_immed());
		stat_inc(STAT_ENQ_LAST);
		return;
	} else if (is_pcpu_kthread(p)) {
		/* No SCX_ENQ_IMMED: it would bounce whenever the CPU is busy. */
		slo_dsq_insert(p, SCX_DSQ_LOCAL, be_slice_ns, 0);
		stat_inc(STAT_KTHREAD);
		return;
	}
	if (scx(p)->nr_cpus_allowed == 1) {
		if (is_pcpu_kthread(p))	/* handed back: first in its CPU's queue */
			enqueue_pinned(p, t, now, be_slice_ns, false);
		else if (slo)
			enqueue_pinned(p, t, deadline, slo_slice(slo), true);
		else
			enqueue_pinned(p, t, now, be_slice_ns, false);
		return;
	}
	if (slo)
		enqueue_slo(p, t, slo, deadline, now);
	else
		enqueue_be(p, t, enq_flags, now);
}

/*
 * Move parked tasks whose cgroup's cpu.max period has ended back to a
 * queue. Scans when the earliest period end has come, and every
 * UNTHROTTLE_RESCAN_NS regardless (next_unthrottle is only a hint).
 */
static __always_inline void unthrottle(u64 now)
{
	struct bpf_iter_scx_dsq it;
	struct task_struct *p;
	u64 next = ~0ULL;

	if (!scx_bpf_dsq_nr_queued(THROTTLED_DSQ))
		return;
	if (now < next_unthrottle && now - last_unthrottle < UNTHROTTLE_RESCAN_NS)
		return;
	last_unthrottle = now;
	__sync_lock_test_and_set(&next_unthrottle, ~0ULL);
	bpf_iter_scx_dsq_new(&it, THROTTLED_DSQ, 0);
	while ((p = bpf_iter_scx_dsq_next(&it))) {
		struct cg_ctx *c = cgctx_peek(task_cpu_cgrp(p));
		struct task_ctx *t = bpf_task_storage_get(&task_ctxs, p, NULL, 0);
		u64 cgid = task_cgid(p);
		u32 dom = dom_of(scx_bpf_task_cpu(p));
		struct slo_entry *slo;

		if (c && throttled(c, now)) {
			next = min64(next, c->period_start + c->period_ns);
			continue;
		}
		slo = bpf_map_lookup_elem(&slos, &cgid);
		if (slo) {
			slo_dsq_move_set_vtime(&it, now + slo->budget_ns);
			slo_dsq_move_vtime(&it, p, SLO_DSQ(dom), 0);
		} else if (t) {
			t->queued_at = now;
			slo_dsq_move_set_vtime(&it, be_vtime(t, dom, true));
			slo_dsq_move_vtime(&it, p, BE_DSQ(dom), 0);
		} else {
			slo_dsq_move_vtime(&it, p, BE_DSQ(dom), 0);
		}
		stat_inc(STAT_UNTHROTTLE);
	}
	bpf_iter_scx_dsq_destroy(&it);
	note_unthrottle(next);
}

/*
 * Virtual time alone cannot bound a best-effort task's wait: a nice 19
 * task (weight 1) among a hundred nice 0 ones may wait longer than the
 * sched_ext watchdog allows, and the kernel would eject us. So every
 * 100 ms one dispatching CPU per domain runs, out of order, the task of
 * its BE queue that has waited longest, if that is over be_starve.
 */
/* Oldest queued_at among the domain's BE tasks allowed on `cpu`; ~0 if none. */
static __always_inline u64 oldest_be_wait(u32 dom, s32 cpu)
{
	struct bpf_iter_scx_dsq it;
	struct task_struct *p;
	u64 oldest = ~0ULL;

	bpf_iter_scx_dsq_new(&it, BE_DSQ(dom), 0);
	while ((p = bpf_iter_scx_dsq_next(&it))) {
		struct task_ctx *t = bpf_task_storage_get(&task_ctxs, p, NULL, 0);

		if (t && t->queued_at < oldest && bpf_cpumask_test_cpu(cpu, scx(p)->cpus_ptr))
			oldest = t->queued_at;
	}
	bpf_iter_scx_dsq_destroy(&it);
	return oldest;
}

static __always_inline bool rescue(u32 dom, s32 cpu, u64 now)
{
	struct dom_ctx *d = dom_ctx_of(dom);
	struct bpf_iter_scx_dsq it;
	struct task_struct *p;
	bool moved = false;
	u64 oldest;

	if (!d || now - d->last_rescue < RESCUE_PERIOD_NS)
		return false;
	d->last_rescue = now;
	oldest = oldest_be_wait(dom, cpu);
	if (oldest == ~0ULL || now - oldest < be_starve_ns)
		return false;
	/* Only tasks allowed here: moving one elsewhere is a runtime error. */
	bpf_iter_scx_dsq_new(&it, BE_DSQ(dom), 0);
	while ((p = bpf_iter_scx_dsq_next(&it))) {
		struct task_ctx *t = bpf_task_storage_get(&task_ctxs, p, NULL, 0);

		if (!t || t->queued_at != oldest || !bpf_cpumask_test_cpu(cpu, scx(p)->cpus_ptr))
			continue;
		if (slo_dsq_move(&it, p, SCX_DSQ_LOCAL, 0)) {
			moved = true;
			stat_inc(STAT_RESCUE);
		}
		break;
	}
	bpf_iter_scx_dsq_destroy(&it);
	return moved;
}

/* Deadline-ordered head of a queue, ~0 when empty. */
static __always_inline u64 head_key(u64 dsq)
{
	struct task_struct *head = slo_dsq_peek(dsq);

	return head ? scx(head)->scx.dsq_vtime : ~0ULL;
}

/*
 * The domain's best-effort head has waited longer than `cpu`'s pinned
 * one (keyed by enqueue time). Pinned work first, always, would leave
 * the domain's queue to rescue() alone on a domain where every CPU has a
 * pinned hog: unpinned tasks would wait be_starve (500 ms) each time.
 */
static __always_inline bool domain_be_older(u32 dom, s32 cpu)
{
	struct task_struct *pin = slo_dsq_peek(PIN_BE_DSQ(cpu));
	struct task_struct *be = slo_dsq_peek(BE_DSQ(dom));
	struct task_ctx *t;

	if (!pin || !be)
		return false;
	t = bpf_task_storage_get(&task_ctxs, be, NULL, 0);
	return t && (s64)(t->queued_at - scx(pin)->scx.dsq_vtime) < 0;
}

/*
 * Run best-effort work on `cpu`: its pinned best-effort tasks (they can
 * run nowhere else) and the domain's queue (any of its CPUs may take
 * those), whichever head has waited longer.
 */
static __always_inline bool run_be(u32 dom, s32 cpu, struct cpu_ctx *cc, bool pin_be, bool guard)
{
	struct dom_ctx *d = dom_ctx_of(dom);
	struct task_struct *be;

	cc->guard = guard;
	if (pin_be && !domain_be_older(dom, cpu) && slo_dsq_move_to_local(PIN_BE_DSQ(cpu))) {
		stat_inc(guard ? STAT_BE_GUARD : STAT_DISPATCH_BE);
		return true;
	}
	/*
	 * be_vnow follows the head of the BE queue, the least-served task,
	 * so tasks run out of vtime order (rescued, sent straight to an idle
	 * CPU, or stolen) cannot drag it ahead.
	 */
	be = slo_dsq_peek(BE_DSQ(dom));
	if (d && be && (s64)(scx(be)->scx.dsq_vtime - d->be_vnow) > 0)
		d->be_vnow = scx(be)->scx.dsq_vtime;
	if (slo_dsq_move_to_local(BE_DSQ(dom)) ||
	    (pin_be && slo_dsq_move_to_local(PIN_BE_DSQ(cpu)))) {
		stat_inc(guard ? STAT_BE_GUARD : STAT_DISPATCH_BE);
		return true;
	}
	cc->guard = 0;
	return false;
}

/* Take work from the other domains, latency work first. */
static __always_inline bool steal(u32 dom)
{
	u32 n = nr_doms < MAX_DOMS ? nr_doms : MAX_DOMS;
	int i;

	bpf_for(i, 1, n) {
		u32 o = (dom + i) % n;

		if (slo_dsq_move_to_local(SLO_DSQ(o)) ||
		    slo_dsq_move_to_local(BE_DSQ(o))) {
			stat_inc(STAT_STEAL);
			return true;
		}
	}
	return false;
}

void BPF_STRUCT_OPS(slo_dispatch, s32 cpu, struct task_struct *prev)
{
	u64 now = slo_now(), kp, ks, kb = ~0ULL;
	struct cpu_ctx *cc = cpu_ctx_of(cpu);
	struct task_struct *head;
	u32 dom = dom_of(cpu);
	bool be_waiting, pin_be;

	if (!cc)
		return;
	unthrottle(now);
	if (rescue(dom, cpu, now))
		return;
	/*
	 * A per-CPU kthread handed back by the kernel waits in PIN_DSQ, keyed
	 * by when it was queued; like one queued locally it goes first, even
	 * before best-effort work past its bound. Where this CPU dispatches
	 * more than be_bound apart (a vCPU the host leaves unrun), that bound
	 * has passed at every dispatch, and kworkers waited until the
	 * watchdog ejected us (7-13 s on 16 emulated vCPUs).
	 */
	head = slo_dsq_peek(PIN_DSQ(cpu));
	if (head && is_pcpu_kthread(head) && slo_dsq_move_to_local(PIN_DSQ(cpu))) {
		stat_inc(STAT_DISPATCH_SLO);
		return;
	}
	kp = head_key(PIN_DSQ(cpu));
	ks = head_key(SLO_DSQ(dom));
	pin_be = scx_bpf_dsq_nr_queued(PIN_BE_DSQ(cpu)) > 0;
	be_waiting = pin_be || scx_bpf_dsq_nr_queued(BE_DSQ(dom)) > 0;
	if (!be_waiting)
		cc->be_last = now;	/* the bound counts from when BE work appears */
	else
		kb = cc->be_last + be_bound_ns;
	/*
	 * Best-effort work waited be_bound on this CPU: it goes now,
	 * protected, for a window of be_guard_slice, not for one task. A
	 * short task (a runtime thread handing over to the spinner it
	 * blocks) would otherwise use up the turn, and each step of such a
	 * hand-over chain would wait be_bound anew.
	 */
	if (be_waiting && ((s64)(now - kb) >= 0 || (s64)(cc->guard_end - now) > 0)) {
		if ((s64)(cc->guard_end - now) <= 0)
			cc->guard_end = now + be_guard_slice_ns;
		if (run_be(dom, cpu, cc, pin_be, true))
			return;
	}
	if (kp <= ks && kp <= kb && kp != ~0ULL &&
	    slo_dsq_move_to_local(PIN_DSQ(cpu))) {
		stat_inc(STAT_DISPATCH_SLO);
		return;
	}
	if (ks <= kb && ks != ~0ULL && slo_dsq_move_to_local(SLO_DSQ(dom))) {
		stat_inc(STAT_DISPATCH_SLO);
		return;
	}
	if (be_waiting) {
		if (ks != ~0ULL)
			stat_inc(STAT_BE_BOUND);
		if (run_be(dom, cpu, cc, pin_be, false))
			return;
	}
	/* The order above can miss work that raced in: try everything once more. */
	if (slo_dsq_move_to_local(PIN_DSQ(cpu)) ||
	    slo_dsq_move_to_local(SLO_DSQ(dom))) {
		stat_inc(STAT_DISPATCH_SLO);
		return;
	}
	if (steal(dom))
		return;
	/* Nothing else to run: the previous task keeps the CPU with a fresh slice. */
	if (prev && (scx(prev)->scx.flags & SCX_TASK_QUEUED)) {
		struct cg_ctx *c = cgctx_peek(task_cpu_cgrp(prev));

		if (!c || !throttled(c, now)) {
			scx(prev)->scx.slice = be_slice_ns;
			stat_inc(STAT_KEEP_PREV);
		}
	}
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
	/* Every tick, not only at enqueue: a late head is flagged while it waits. */
	flag_late_head(SLO_DSQ(dom_of(bpf_get_smp_processor_id())), slo_now());
	c = cgctx_peek(task_cpu_cgrp(p));
	if (!c || !c->quota_ns)
		return;
	t = bpf_task_storage_get(&task_ctxs, p, NULL, 0);
	if (!t)
		return;
	now = slo_now();
	/*
	 * Charge cpu.max at every tick, not only when the task stops, so
	 * tasks of one cgroup running on several CPUs see each other's use;
	 * cut the slice once over quota.
	 */
	bw_charge(c, p, t, now);
	if (throttled(c, now))
		scx(p)->scx.slice = 0;
}

void BPF_STRUCT_OPS(slo_runnable, struct task_struct *p, u64 enq_flags)
{
	struct task_ctx *t = tctx_of(p);
	struct cg_ctx *c;

	if (!t)
		return;
	start_wait(p, t, slo_now());
	t->runnable = true;
	c = cgctx_of(task_cpu_cgrp(p));
	if (c)
		__sync_fetch_and_add(&c->nr_runnable, 1);
}

/*
 * ops.running and ops.stopping run under the task's rq lock but not
 * always on its CPU (a property change of a running task, such as its
 * affinity, stops and restarts it from the CPU making the change), so
 * per-CPU state is indexed by the task's CPU.
 */
void BPF_STRUCT_OPS(slo_running, struct task_struct *p)
{
	u64 now = slo_now(), cgid = task_cgid(p);
	struct task_ctx *t = tctx_of(p);
	struct cpu_ctx *cc = cpu_ctx_of(scx_bpf_task_cpu(p));
	struct slo_entry *slo = bpf_map_lookup_elem(&slos, &cgid);

	if (!t)
		return;
	t->run_exec = exec_clock(p);
	t->bw_exec = t->run_exec;
	end_wait(p, t, now);
	/* Queued as best-effort (no SLO, or over its reserve: see slo_enqueue). */
	t->ran_be = !slo || t->key == BE_KEY;
	if (t->ran_be) {
		t->key = BE_KEY;
		/*
		 * Per-CPU kthreads jump the queues (slo_enqueue): they must not
		 * count as this CPU serving its best-effort work.
		 */
		if (cc && !is_pcpu_kthread(p)) {
			cc->be_last = now;
			if (cc->guard) {
				/*
				 * Protected: no SLO wakeup (all due later than now)
				 * preempts it, until the window ends.
				 */
				u64 left = max64((s64)(cc->guard_end - now) > 0 ? cc->guard_end - now : 0,
						 slo_slice_min_ns);

				t->key = now;
				cc->guard = 0;
				if (scx(p)->scx.slice > left)
					scx(p)->scx.slice = left;
			}
		}
	}
	if (cc)
		cc->key = t->key;
}

void BPF_STRUCT_OPS(slo_stopping, struct task_struct *p, bool runnable)
{
	u64 now = slo_now(), ran, cgid = task_cgid(p);
	struct task_ctx *t = tctx_of(p);
	struct cpu_ctx *cc = cpu_ctx_of(scx_bpf_task_cpu(p));
	struct cg_ctx *c, *sc;
	u64 w;

	if (cc)
		cc->key = 0;
	if (!t)
		return;
	ran = exec_since(p, &t->run_exec);
	c = cgctx_of(task_cpu_cgrp(p));
	if (c) {
		if (c->quota_ns)
			bw_charge(c, p, t, now);
		if (t->ran_be) {
			/* The cgroup's weight is shared by its runnable tasks. */
			s32 nr = c->nr_runnable;

			nr = nr < 1 ? 1 : (nr > 1024 ? 1024 : nr);
			w = (u64)c->weight * scx(p)->scx.weight / 100;
			w = w ? w : 1;
			t->vtime += ran * 100 * nr / w;
		}
	}
	sc = bpf_map_lookup_elem(&slos, &cgid) ? cgctx_of(p->cgroups->dfl_cgrp) : NULL;
	if (sc)
		usage_charge(sc, now, ran);
	if (runnable)
		start_wait(p, t, now);	/* preempted or slice over: waits again */
}

void BPF_STRUCT_OPS(slo_quiescent, struct task_struct *p, u64 deq_flags)
{
	struct task_ctx *t = bpf_task_storage_get(&task_ctxs, p, NULL, 0);
	struct cg_ctx *c;

	if (!t)
		return;
	cancel_wait(t);	/* it leaves without running: no wait to charge */
	if (!t->runnable)
		return;
	t->runnable = false;
	c = cgctx_peek(task_cpu_cgrp(p));
	if (c)
		__sync_fetch_and_add(&c->nr_runnable, -1);
}

s32 BPF_STRUCT_OPS(slo_init_task, struct task_struct *p, void *args)
{
	struct task_ctx *t = tctx_of(p);
	u32 dom = dom_of(scx_bpf_task_cpu(p));
	struct dom_ctx *d = dom_ctx_of(dom);

	if (!t)
		return -12; /* -ENOMEM */
	/* Start new tasks at their domain's current virtual time, not at 0. */
	t->dom = dom;
	t->vtime = d ? d->be_vnow : 0;
	return 0;
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
	struct cg_ctx *c = cgctx_of(cgrp);

	/* No memory: the cgroup runs with defaults (counted in no_ctx), mkdir still succeeds. */
	if (!c)
		return 0;
	/* Update in place: tasks may already count in nr_runnable. */
	c->weight = args->weight ? args->weight : 100;
	/* cpu.max reaches sched_ext from 6.17 on (scheduler.FeatureCPUMax). */
	if (bpf_core_field_exists(args->bw_quota_us))
		set_bandwidth(c, args->bw_period_us, args->bw_quota_us);
	return 0;
}

void BPF_STRUCT_OPS(slo_cgroup_exit, struct cgroup *cgrp)
{
	u64 cgid = cgrp->kn->id;

	/* Its cg_ctx goes with the cgroup's local storage. */
	bpf_map_delete_elem(&cgroup_stats, &cgid);
}

void BPF_STRUCT_OPS(slo_cgroup_set_weight, struct cgroup *cgrp, u32 weight)
{
	struct cg_ctx *c = cgctx_of(cgrp);

	if (c)
		c->weight = weight ? weight : 100;
}

void BPF_STRUCT_OPS(slo_cgroup_set_bandwidth, struct cgroup *cgrp, u64 period_us, u64 quota_us, u64 burst_us)
{
	struct cg_ctx *c = cgctx_of(cgrp);

	if (c)
		set_bandwidth(c, period_us, quota_us);
}

/*
 * Hotplug: implementing these keeps the kernel from ejecting us when a
 * CPU comes or goes. Tasks pinned to a CPU that goes away have their
 * affinity changed by the kernel, which dequeues and re-enqueues them.
 */
void BPF_STRUCT_OPS(slo_cpu_online, s32 cpu)
{
	struct cpu_ctx *cc = cpu_ctx_of(cpu);

	if (cc) {
		cc->key = 0;
		cc->be_last = slo_now();
	}
	stat_inc(STAT_HOTPLUG);
}

void BPF_STRUCT_OPS(slo_cpu_offline, s32 cpu)
{
	struct cpu_ctx *cc = cpu_ctx_of(cpu);

	if (cc)
		cc->key = 0;	/* never a preemption victim while away */
	stat_inc(STAT_HOTPLUG);
}

static long kick_idle(u64 i, void *data)
{
	scx_bpf_kick_cpu(i, SCX_KICK_IDLE);
	return 0;
}

/*
 * Every 2 ms while tasks are parked: if a throttled cgroup's period may
 * have ended, wake idle CPUs to dispatch (busy CPUs move parked tasks
 * back in dispatch anyway). With nothing parked the timer stays off.
 *
 * timer_armed is cleared before the queue is checked, and enqueue parks
 * a task before setting it, so one side always sees the other.
 */
static int unthrottle_timer_fn(void *map, int *key, struct unthrottle_timer *ut)
{
	u64 now = slo_now();

	__sync_lock_test_and_set(&timer_armed, 0);
	if (now >= next_unthrottle || now - last_unthrottle >= UNTHROTTLE_RESCAN_NS)
		bpf_loop(nr_cpus(), kick_idle, NULL, 0);
	if (scx_bpf_dsq_nr_queued(THROTTLED_DSQ) && !__sync_lock_test_and_set(&timer_armed, 1))
		bpf_timer_start(&ut->timer, TIMER_PERIOD_NS, 0);
	return 0;
}

s32 BPF_STRUCT_OPS_SLEEPABLE(slo_init)
{
	u32 zero = 0, n = nr_doms < MAX_DOMS ? nr_doms : MAX_DOMS;
	struct unthrottle_timer *ut;
	s32 err;
	int i;

	next_unthrottle = ~0ULL;
	if ((err = scx_bpf_create_dsq(THROTTLED_DSQ, -1)))
		return err;
	bpf_for(i, 0, n) {
		if ((err = scx_bpf_create_dsq(SLO_DSQ(i), -1)))
			return err;
		if ((err = scx_bpf_create_dsq(BE_DSQ(i), -1)))
			return err;
	}
	bpf_for(i, 0, nr_cpus()) {
		if ((err = scx_bpf_create_dsq(PIN_DSQ(i), -1)))
			return err;
		if ((err = scx_bpf_create_dsq(PIN_BE_DSQ(i), -1)))
			return err;
	}
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
	slot_free_hist(id);
	bpf_map_delete_elem(&cgroup_stats, &id);
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
	.cpu_online		= (void *)slo_cpu_online,
	.cpu_offline		= (void *)slo_cpu_offline,
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
