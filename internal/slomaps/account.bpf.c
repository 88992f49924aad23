//go:build ignore

// SPDX-License-Identifier: GPL-2.0
/*
 * account.bpf.c: compiles bpf/include/slo_account.h on its own so bpf2go
 * generates the Go types of its structs (Stats, Entry) once, here, for
 * both programs that include it. Never loaded; tests compare its BTF with
 * the tracer's and the scheduler's.
 */
#include "kernel.h"
#include <bpf/bpf_helpers.h>
#include "slo_account.h"

char LICENSE[] SEC("license") = "GPL";
