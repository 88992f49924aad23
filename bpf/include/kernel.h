/* SPDX-License-Identifier: GPL-2.0 */
/*
 * kernel.h: the few kernel-internal types scx-slo's tracing programs read,
 * declared by hand with CO-RE so one object loads on any BTF kernel.
 *
 * Only the fields we touch are listed; preserve_access_index makes clang
 * emit relocations that libbpf/cilium-ebpf resolve against the running
 * kernel's BTF, so offsets here are irrelevant and layout drift is safe.
 */
#ifndef SCX_SLO_KERNEL_H
#define SCX_SLO_KERNEL_H

#include <linux/types.h>
#include <linux/bpf.h>

typedef __u8 u8;
typedef __u16 u16;
typedef __u32 u32;
typedef __u64 u64;
typedef __s32 s32;
typedef __s64 s64;
typedef _Bool bool;
#define true 1
#define false 0

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

struct kernfs_node {
	u64 id; /* inode number of the cgroup directory since 5.5 */
};

struct cgroup_root {
	int hierarchy_id; /* 0 is the cgroup2 (default) hierarchy */
};

struct cgroup {
	struct kernfs_node *kn;
	struct cgroup_root *root;
	int level;
};

struct cgroup_subsys_state {
	struct cgroup *cgroup;
};

struct css_set {
	struct cgroup_subsys_state *subsys[16]; /* CGROUP_SUBSYS_COUNT; indexed via CO-RE enum */
	struct cgroup *dfl_cgrp;
};

struct task_struct {
	unsigned int __state;
	/* SMP kernels: the task is on a CPU. An int in some kernels, a byte
	 * in others: read as a byte, the low one of an int on little-endian
	 * (bpfel, the only target), 0 or 1 either way. */
	unsigned char on_cpu;
	int pid;
	int tgid;
	struct css_set *cgroups;
};

#pragma clang attribute pop

/* Resolved against the kernel's own enum at load time (bpf_core_enum_value). */
enum cgroup_subsys_id {
	cpu_cgrp_id = 1,
};

#endif
