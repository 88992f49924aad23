// Package scheduler holds the scx-slo sched_ext scheduler (scheduler.bpf.c)
// and its generated bindings; package enforcer loads and attaches it.
package scheduler

//go:generate go tool bpf2go -cc clang-19 -cflags "-O2 -g -Wall -Werror -mcpu=v3" -target bpfel -no-global-types -type task_ctx -type cg_ctx -type user_exit_info sched scheduler.bpf.c -- -I../include -I/usr/include/x86_64-linux-gnu

// The same source for kernels 6.12-6.18, whose kfuncs have older names
// (sched_ext.h, SCX_SLO_COMPAT); VariantFor picks one object at load time.
//go:generate go tool bpf2go -cc clang-19 -cflags "-O2 -g -Wall -Werror -mcpu=v3 -DSCX_SLO_COMPAT" -target bpfel -no-global-types schedCompat scheduler.bpf.c -- -I../include -I/usr/include/x86_64-linux-gnu
