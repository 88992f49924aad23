//go:build ignore

// SPDX-License-Identifier: GPL-2.0
/*
 * account.bpf.c: compiles bpf/include/slo_account.h and wait_slots.h on
 * their own so bpf2go generates the Go types of their structs (Stats,
 * Entry, WaitingSlot, HistSlot) once, here, for both programs that
 * include them. Never loaded; tests compare its BTF with
 * the tracer's and the scheduler's.
 */
#include "kernel.h"
#include <bpf/bpf_helpers.h>
#include "wait_slots.h"

char LICENSE[] SEC("license") = "GPL";

/* wait_slots.h calls the including program's; this object only carries types. */
static __always_inline u64 task_cgid(struct task_struct *p)
{
	return 0;
}
