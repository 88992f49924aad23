package slomaps

// The Go types of struct cg_stats, slo_entry, waiting_slot and hist_slot, from the headers
// both BPF programs include (see account.bpf.c).
//go:generate go tool bpf2go -cc clang-19 -cflags "-O2 -g -Wall -Werror" -target bpfel -no-global-types -type cg_stats -type slo_entry -type waiting_slot -type hist_slot account account.bpf.c -- -I../../bpf/include -I/usr/include/x86_64-linux-gnu
