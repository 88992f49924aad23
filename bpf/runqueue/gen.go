// Package runqueue loads the observe-mode tracer (runqueue.bpf.c) that
// measures wakeup-to-run latency per cgroup, and reads its maps.
package runqueue

//go:generate go tool bpf2go -cc clang-19 -cflags "-O2 -g -Wall -Werror" -target bpfel -no-global-types -type preempt_key -type wait_mark tracer runqueue.bpf.c -- -I../include -I/usr/include/x86_64-linux-gnu
