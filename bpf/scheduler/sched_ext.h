/* SPDX-License-Identifier: GPL-2.0 */
/*
 * sched_ext.h: the sched_ext ABI the scx-slo scheduler uses, declared by
 * hand instead of a generated vmlinux.h (150k lines for ~15 types).
 *
 * Structs the program reads or writes carry preserve_access_index, so
 * field offsets are CO-RE relocated against the running kernel's BTF; the
 * "___scx" flavour suffix lets us name a second view of task_struct next
 * to kernel.h's (CO-RE ignores everything after "___").
 *
 * Constants are the 7.3 kernel's values; every one below has kept its
 * value since sched_ext was merged (6.12), so they are plain macros.
 *
 * kfunc names were checked against the 7.3 guest kernel's BTF. Two of
 * them need care (see the comment at scx_bpf_dsq_insert___v2).
 */
#ifndef SCX_SLO_SCHED_EXT_H
#define SCX_SLO_SCHED_EXT_H

#include "kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#define SCX_DSQ_FLAG_BUILTIN	(1ULL << 63)
#define SCX_DSQ_LOCAL		(SCX_DSQ_FLAG_BUILTIN | 2)
#define SCX_DSQ_LOCAL_ON	(SCX_DSQ_FLAG_BUILTIN | (1ULL << 62))	/* | cpu */

#define SCX_ENQ_WAKEUP		(1ULL << 0)
#define SCX_ENQ_PREEMPT		(1ULL << 32)	/* to a local DSQ: head, and cut the current slice */
#define SCX_ENQ_REENQ		(1ULL << 40)	/* handed back by the kernel (its CPU was taken) */
#define SCX_ENQ_LAST		(1ULL << 41)	/* the CPU's last runnable task (SCX_OPS_ENQ_LAST) */

#define SCX_TASK_QUEUED		(1U << 0)	/* sched_ext_entity.flags: on the runqueue */

#define SCX_KICK_IDLE		(1ULL << 0)
#define SCX_KICK_PREEMPT	(1ULL << 1)

#define SCX_OPS_ENQ_LAST	(1ULL << 1)
#define SCX_OPS_SWITCH_PARTIAL	(1ULL << 3)

#define SCX_OPS_NAME_LEN	128

/* Since 6.2; the host's uapi headers may predate it. */
#define BPF_MAP_TYPE_CGRP_STORAGE___slo	32

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

struct cpumask {
	unsigned long bits[1];	/* opaque here: only passed back to kfuncs */
};

struct sched_ext_entity {
	u64 dsq_vtime;
	u64 slice;
	u32 flags;	/* SCX_TASK_* */
	u32 weight;	/* 1..10000 from the task's nice value, 100 at nice 0 */
};

/* CONFIG_CGROUP_SCHED's task group: its css names the cpu cgroup. */
struct task_group {
	struct cgroup_subsys_state css;
};

/* The fair class's entity, for the task clock every class keeps in it. */
struct sched_entity___scx {
	u64 sum_exec_runtime;
};

struct task_struct___scx {
	int pid;
	unsigned int flags;	/* PF_* */
	int nr_cpus_allowed;
	const struct cpumask *cpus_ptr;
	struct sched_ext_entity scx;
	struct sched_entity___scx se;
	struct css_set *cgroups;
	struct task_group *sched_task_group;
};

enum scx_exit_kind { SCX_EXIT_NONE___slo };

struct scx_exit_info {
	enum scx_exit_kind kind;
	s64 exit_code;
	const char *reason;
	char *msg;
};

struct scx_cgroup_init_args {
	u32 weight;
	u64 bw_period_us;
	u64 bw_quota_us;
	u64 bw_burst_us;
};

#pragma clang attribute pop

/*
 * Only for CO-RE existence checks: SCX_ENQ_IMMED appeared in 7.1, and its
 * value comes from the running kernel (bpf_core_enum_value).
 */
enum scx_enq_flags___slo { SCX_ENQ_IMMED___slo = 0 };

/* Passed by pointer to kfuncs: layout must equal the kernel's exactly. */
struct scx_bpf_dsq_insert_vtime_args {
	u64 dsq_id;
	u64 slice;
	u64 vtime;
	u64 enq_flags;
};

struct bpf_iter_scx_dsq {
	u64 __opaque[6];
} __attribute__((aligned(8)));

/*
 * The ops table. cilium/ebpf copies it into the kernel's struct member by
 * member *by name*, so only the members we set need to be declared, with
 * the kernel's sizes.
 */
struct sched_ext_ops {
	s32 (*select_cpu)(struct task_struct *p, s32 prev_cpu, u64 wake_flags);
	void (*enqueue)(struct task_struct *p, u64 enq_flags);
	void (*dispatch)(s32 cpu, struct task_struct *prev);
	void (*tick)(struct task_struct *p);
	void (*runnable)(struct task_struct *p, u64 enq_flags);
	void (*running)(struct task_struct *p);
	void (*stopping)(struct task_struct *p, bool runnable);
	void (*quiescent)(struct task_struct *p, u64 deq_flags);
	s32 (*init_task)(struct task_struct *p, void *args);
	s32 (*cgroup_init)(struct cgroup *cgrp, struct scx_cgroup_init_args *args);
	void (*cgroup_exit)(struct cgroup *cgrp);
	void (*cgroup_set_weight)(struct cgroup *cgrp, u32 weight);
	void (*cgroup_set_bandwidth)(struct cgroup *cgrp, u64 period_us, u64 quota_us, u64 burst_us);
	void (*cpu_online)(s32 cpu);
	void (*cpu_offline)(s32 cpu);
	s32 (*init)(void);
	void (*exit)(struct scx_exit_info *ei);
	u64 flags;
	u32 timeout_ms;
	char name[SCX_OPS_NAME_LEN];
};

/*
 * kfuncs that sched_ext renamed or re-typed between 6.12 and 7.x. The
 * object is built twice from this source (see gen.go), and the loader
 * picks one by the running kernel's BTF (scheduler.VariantFor):
 *
 * - default (6.19+): the ___v2 variants of scx_bpf_dsq_insert and
 *   scx_bpf_dsq_move_to_local, __scx_bpf_dsq_insert_vtime and
 *   scx_bpf_dsq_peek. On these kernels the plain names have "___v2" and
 *   "___v2_impl" siblings in BTF, and cilium/ebpf v0.22.0 then fails to
 *   resolve a plain name ("multiple matching types": its name filter skips
 *   an element after each deletion), even a weak one. So this object must
 *   not mention the plain names at all.
 * - SCX_SLO_COMPAT (6.12-6.18): weak declarations of the 6.13 names and of
 *   the 6.12 ones (scx_bpf_dispatch*, scx_bpf_consume), chosen at load
 *   time with slo_ksym_exists(): cilium/ebpf resolves a missing weak kfunc
 *   to address 0 and the verifier drops the branch that would call it.
 *   scx_bpf_dsq_peek (6.19) is replaced by the first element of a DSQ
 *   iterator, scx_bpf_now (6.14) by bpf_ktime_get_ns().
 *
 * The slo_* wrappers are all the scheduler calls; internal/scxcap lists,
 * per variant, the kfuncs each object may call (a test keeps the lists
 * equal to the objects' symbols).
 */
#define slo_ksym_exists(sym) ({							\
	_Static_assert(!__builtin_constant_p(!!(sym)), #sym " must be __weak");	\
	!!(sym);								\
})

extern int bpf_iter_scx_dsq_new(struct bpf_iter_scx_dsq *it, u64 dsq_id, u64 flags) __ksym;
extern struct task_struct *bpf_iter_scx_dsq_next(struct bpf_iter_scx_dsq *it) __ksym;
extern void bpf_iter_scx_dsq_destroy(struct bpf_iter_scx_dsq *it) __ksym;

#ifndef SCX_SLO_COMPAT

extern bool scx_bpf_dsq_insert___v2(struct task_struct *p, u64 dsq_id, u64 slice, u64 enq_flags) __ksym;
extern bool scx_bpf_dsq_move_to_local___v2(u64 dsq_id, u64 enq_flags) __ksym;
extern bool __scx_bpf_dsq_insert_vtime(struct task_struct *p, struct scx_bpf_dsq_insert_vtime_args *args) __ksym;
extern struct task_struct *scx_bpf_dsq_peek(u64 dsq_id) __ksym;
extern u64 scx_bpf_now(void) __ksym;
extern void scx_bpf_dsq_move_set_vtime(struct bpf_iter_scx_dsq *it__iter, u64 vtime) __ksym;
extern bool scx_bpf_dsq_move(struct bpf_iter_scx_dsq *it__iter, struct task_struct *p, u64 dsq_id, u64 enq_flags) __ksym;
extern bool scx_bpf_dsq_move_vtime(struct bpf_iter_scx_dsq *it__iter, struct task_struct *p, u64 dsq_id, u64 enq_flags) __ksym;

/* Returns false if the kernel dropped the task (7.x reports it). */
static __always_inline bool slo_dsq_insert(struct task_struct *p, u64 dsq_id, u64 slice, u64 enq_flags)
{
	return scx_bpf_dsq_insert___v2(p, dsq_id, slice, enq_flags);
}

static __always_inline void slo_dsq_insert_vtime(struct task_struct *p, u64 dsq_id, u64 slice, u64 vtime, u64 enq_flags)
{
	struct scx_bpf_dsq_insert_vtime_args args = {
		.dsq_id = dsq_id, .slice = slice, .vtime = vtime, .enq_flags = enq_flags,
	};

	__scx_bpf_dsq_insert_vtime(p, &args);
}

static __always_inline bool slo_dsq_move_to_local(u64 dsq_id)
{
	return scx_bpf_dsq_move_to_local___v2(dsq_id, 0);
}

static __always_inline struct task_struct *slo_dsq_peek(u64 dsq_id)
{
	return scx_bpf_dsq_peek(dsq_id);
}

static __always_inline u64 slo_now(void)
{
	return scx_bpf_now();
}

#define slo_dsq_move_set_vtime	scx_bpf_dsq_move_set_vtime
#define slo_dsq_move		scx_bpf_dsq_move
#define slo_dsq_move_vtime	scx_bpf_dsq_move_vtime

#else /* SCX_SLO_COMPAT */

/* 6.13+ */
extern void scx_bpf_dsq_insert(struct task_struct *p, u64 dsq_id, u64 slice, u64 enq_flags) __ksym __weak;
extern void scx_bpf_dsq_insert_vtime(struct task_struct *p, u64 dsq_id, u64 slice, u64 vtime, u64 enq_flags) __ksym __weak;
extern bool scx_bpf_dsq_move_to_local(u64 dsq_id) __ksym __weak;
extern void scx_bpf_dsq_move_set_vtime(struct bpf_iter_scx_dsq *it__iter, u64 vtime) __ksym __weak;
extern bool scx_bpf_dsq_move(struct bpf_iter_scx_dsq *it__iter, struct task_struct *p, u64 dsq_id, u64 enq_flags) __ksym __weak;
extern bool scx_bpf_dsq_move_vtime(struct bpf_iter_scx_dsq *it__iter, struct task_struct *p, u64 dsq_id, u64 enq_flags) __ksym __weak;
/* 6.14+ */
extern u64 scx_bpf_now(void) __ksym __weak;
/* 6.12-6.14 */
extern void scx_bpf_dispatch(struct task_struct *p, u64 dsq_id, u64 slice, u64 enq_flags) __ksym __weak;
extern void scx_bpf_dispatch_vtime(struct task_struct *p, u64 dsq_id, u64 slice, u64 vtime, u64 enq_flags) __ksym __weak;
extern bool scx_bpf_consume(u64 dsq_id) __ksym __weak;
extern void scx_bpf_dispatch_from_dsq_set_vtime(struct bpf_iter_scx_dsq *it__iter, u64 vtime) __ksym __weak;
extern bool scx_bpf_dispatch_from_dsq(struct bpf_iter_scx_dsq *it__iter, struct task_struct *p, u64 dsq_id, u64 enq_flags) __ksym __weak;
extern bool scx_bpf_dispatch_vtime_from_dsq(struct bpf_iter_scx_dsq *it__iter, struct task_struct *p, u64 dsq_id, u64 enq_flags) __ksym __weak;

/* Before 6.19 an insert cannot fail visibly: always true. */
static __always_inline bool slo_dsq_insert(struct task_struct *p, u64 dsq_id, u64 slice, u64 enq_flags)
{
	if (slo_ksym_exists(scx_bpf_dsq_insert))
		scx_bpf_dsq_insert(p, dsq_id, slice, enq_flags);
	else
		scx_bpf_dispatch(p, dsq_id, slice, enq_flags);
	return true;
}

static __always_inline void slo_dsq_insert_vtime(struct task_struct *p, u64 dsq_id, u64 slice, u64 vtime, u64 enq_flags)
{
	if (slo_ksym_exists(scx_bpf_dsq_insert_vtime))
		scx_bpf_dsq_insert_vtime(p, dsq_id, slice, vtime, enq_flags);
	else
		scx_bpf_dispatch_vtime(p, dsq_id, slice, vtime, enq_flags);
}

static __always_inline bool slo_dsq_move_to_local(u64 dsq_id)
{
	if (slo_ksym_exists(scx_bpf_dsq_move_to_local))
		return scx_bpf_dsq_move_to_local(dsq_id);
	return scx_bpf_consume(dsq_id);
}

static __always_inline void slo_dsq_move_set_vtime(struct bpf_iter_scx_dsq *it, u64 vtime)
{
	if (slo_ksym_exists(scx_bpf_dsq_move_set_vtime))
		scx_bpf_dsq_move_set_vtime(it, vtime);
	else
		scx_bpf_dispatch_from_dsq_set_vtime(it, vtime);
}

static __always_inline bool slo_dsq_move(struct bpf_iter_scx_dsq *it, struct task_struct *p, u64 dsq_id, u64 enq_flags)
{
	if (slo_ksym_exists(scx_bpf_dsq_move))
		return scx_bpf_dsq_move(it, p, dsq_id, enq_flags);
	return scx_bpf_dispatch_from_dsq(it, p, dsq_id, enq_flags);
}

static __always_inline bool slo_dsq_move_vtime(struct bpf_iter_scx_dsq *it, struct task_struct *p, u64 dsq_id, u64 enq_flags)
{
	if (slo_ksym_exists(scx_bpf_dsq_move_vtime))
		return scx_bpf_dsq_move_vtime(it, p, dsq_id, enq_flags);
	return scx_bpf_dispatch_vtime_from_dsq(it, p, dsq_id, enq_flags);
}

/* The DSQ's first task, as scx_bpf_dsq_peek returns it from 6.19 on. */
static __always_inline struct task_struct *slo_dsq_peek(u64 dsq_id)
{
	struct bpf_iter_scx_dsq it;
	struct task_struct *p = NULL;

	if (!bpf_iter_scx_dsq_new(&it, dsq_id, 0))
		p = bpf_iter_scx_dsq_next(&it);
	bpf_iter_scx_dsq_destroy(&it);
	return p;
}

static __always_inline u64 slo_now(void)
{
	if (slo_ksym_exists(scx_bpf_now))
		return scx_bpf_now();
	return bpf_ktime_get_ns();
}

#endif /* SCX_SLO_COMPAT */

extern s32 scx_bpf_create_dsq(u64 dsq_id, s32 node) __ksym;
extern s32 scx_bpf_dsq_nr_queued(u64 dsq_id) __ksym;
extern s32 scx_bpf_select_cpu_dfl(struct task_struct *p, s32 prev_cpu, u64 wake_flags, bool *is_idle) __ksym;
extern s32 scx_bpf_pick_idle_cpu(const struct cpumask *cpus_allowed, u64 flags) __ksym;
extern void scx_bpf_kick_cpu(s32 cpu, u64 flags) __ksym;
extern bool bpf_cpumask_test_cpu(u32 cpu, const struct cpumask *cpumask) __ksym;
extern u32 scx_bpf_nr_cpu_ids(void) __ksym;
extern s32 scx_bpf_task_cpu(const struct task_struct *p) __ksym;
extern void scx_bpf_error_bstr(char *fmt, u64 *data, u32 data__sz) __ksym;
extern bool scx_bpf_test_and_clear_cpu_idle(s32 cpu) __ksym;

/* Open-coded numeric iterator (6.4+): bounded loops the verifier checks once. */
struct bpf_iter_num {
	u64 __opaque[1];
} __attribute__((aligned(8)));

extern int bpf_iter_num_new(struct bpf_iter_num *it, int start, int end) __ksym;
extern int *bpf_iter_num_next(struct bpf_iter_num *it) __ksym;
extern void bpf_iter_num_destroy(struct bpf_iter_num *it) __ksym;

/* for (i = start; i < end; i++), with i an int declared by the caller. */
#define bpf_for(i, start, end)							\
	for (struct bpf_iter_num ___it __attribute__((aligned(8),		\
			cleanup(bpf_iter_num_destroy))),			\
	     *___p __attribute__((unused)) = (					\
			bpf_iter_num_new(&___it, (start), (end)),		\
			(void)bpf_iter_num_destroy, (void *)0);			\
	     ({ int *___t = bpf_iter_num_next(&___it);				\
		(___t && ((i) = *___t, 1)); });					\
	    )

#define BPF_STRUCT_OPS(name, args...) SEC("struct_ops/" #name) BPF_PROG(name, ##args)
#define BPF_STRUCT_OPS_SLEEPABLE(name, args...) SEC("struct_ops.s/" #name) BPF_PROG(name, ##args)

#endif
