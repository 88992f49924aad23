/* SPDX-License-Identifier: GPL-2.0 */
/*
 * user_exit_info.h: how the scheduler hands the kernel's reason for
 * disabling it to userspace, after the sched_ext convention
 * (UEI_DEFINE declares the record, UEI_RECORD fills it in ops.exit).
 *
 * Ours differs in two ways: the record has its own section, .data.exit,
 * so it is a map of its own that userspace pins and a restarted exporter
 * re-adopts; and it counts exits, so userspace tells a new exit from one
 * it has seen. The layout (kind at 0, exit_code at 8, count at 16, reason
 * at 24, msg at 152) is what the earlier separate variables had, so an
 * exporter can still read a scheduler pinned by an older one.
 *
 * UEI_RECORD publishes kind with an atomic exchange after the strings and
 * the code: a reader that sees the new kind sees the rest of the record.
 */
#ifndef SCX_SLO_USER_EXIT_INFO_H
#define SCX_SLO_USER_EXIT_INFO_H

#define UEI_REASON_LEN	128
#define UEI_MSG_LEN	1024

struct user_exit_info {
	u32 kind;		/* enum scx_exit_kind; 0 until the first exit */
	s64 exit_code;
	u64 count;		/* exits recorded by this load */
	char reason[UEI_REASON_LEN];
	char msg[UEI_MSG_LEN];
};

#define UEI_DEFINE(name) struct user_exit_info name SEC(".data.exit")

#define UEI_RECORD(uei, ei) ({							\
	bpf_probe_read_kernel_str((uei).reason, sizeof((uei).reason), (ei)->reason);	\
	bpf_probe_read_kernel_str((uei).msg, sizeof((uei).msg), (ei)->msg);	\
	(uei).exit_code = (ei)->exit_code;					\
	__atomic_exchange_n(&(uei).kind, (ei)->kind, __ATOMIC_SEQ_CST);		\
	__sync_fetch_and_add(&(uei).count, 1);					\
})

#endif
