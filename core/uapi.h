/* SPDX-License-Identifier: MIT */
/*
 * The ublk kernel interface as of Linux 6.12 (include/uapi/linux/ublk_cmd.h),
 * plus the feature bits that 7.3 reports, so that all of them have names.
 *
 * Debian's /usr/include/linux/ublk_cmd.h is from 6.1 and lacks the
 * ioctl-encoded opcodes and later flags, so the project carries its own copy
 * of the parts it uses. Sizes and offsets are pinned by static asserts.
 */
#ifndef LUABLK_UAPI_H
#define LUABLK_UAPI_H

#include <stddef.h>
#include <stdint.h>
#include <sys/ioctl.h>

/* Control command numbers; the legacy opcode is the bare number. */
#define UBLK_CMD_GET_QUEUE_AFFINITY 0x01
#define UBLK_CMD_GET_DEV_INFO 0x02
#define UBLK_CMD_ADD_DEV 0x04
#define UBLK_CMD_DEL_DEV 0x05
#define UBLK_CMD_START_DEV 0x06
#define UBLK_CMD_STOP_DEV 0x07
#define UBLK_CMD_SET_PARAMS 0x08
#define UBLK_CMD_GET_PARAMS 0x09
#define UBLK_CMD_START_USER_RECOVERY 0x10
#define UBLK_CMD_END_USER_RECOVERY 0x11
#define UBLK_CMD_GET_DEV_INFO2 0x12
#define UBLK_CMD_GET_FEATURES 0x13 /* encoded form only */
#define UBLK_CMD_DEL_DEV_ASYNC 0x14 /* encoded form only */
#define UBLK_CMD_UPDATE_SIZE 0x15 /* encoded form only, 6.16 */
#define UBLK_CMD_QUIESCE_DEV 0x16 /* encoded form only, 6.16 */
#define UBLK_CMD_TRY_STOP_DEV 0x17 /* encoded form only, 7.0 */

/* IO command numbers (sent on /dev/ublkcN). */
#define UBLK_IO_FETCH_REQ 0x20
#define UBLK_IO_COMMIT_AND_FETCH_REQ 0x21

#define UBLK_IO_RES_ABORT (-19) /* -ENODEV: the fetch was cancelled */

#define UBLK_MAX_QUEUE_DEPTH 4096
#define UBLK_MAX_NR_QUEUES 4096
#define UBLKSRV_IO_BUF_OFFSET 0x80000000ULL
#define UBLK_IO_BUF_BITS 25
#define UBLK_TAG_OFF 25
#define UBLK_QID_OFF 41

/* dev_info.flags */
#define UBLK_F_SUPPORT_ZERO_COPY (1ULL << 0)
#define UBLK_F_URING_CMD_COMP_IN_TASK (1ULL << 1)
#define UBLK_F_NEED_GET_DATA (1ULL << 2)
#define UBLK_F_USER_RECOVERY (1ULL << 3)
#define UBLK_F_USER_RECOVERY_REISSUE (1ULL << 4)
#define UBLK_F_UNPRIVILEGED_DEV (1ULL << 5)
#define UBLK_F_CMD_IOCTL_ENCODE (1ULL << 6)
#define UBLK_F_USER_COPY (1ULL << 7)
#define UBLK_F_ZONED (1ULL << 8)
#define UBLK_F_USER_RECOVERY_FAIL_IO (1ULL << 9)
#define UBLK_F_UPDATE_SIZE (1ULL << 10)
#define UBLK_F_AUTO_BUF_REG (1ULL << 11)
#define UBLK_F_QUIESCE (1ULL << 12)
#define UBLK_F_PER_IO_DAEMON (1ULL << 13)
#define UBLK_F_BUF_REG_OFF_DAEMON (1ULL << 14)
#define UBLK_F_BATCH_IO (1ULL << 15)
#define UBLK_F_INTEGRITY (1ULL << 16)
#define UBLK_F_SAFE_STOP_DEV (1ULL << 17)
#define UBLK_F_NO_AUTO_PART_SCAN (1ULL << 18)
#define UBLK_F_SHMEM_ZC (1ULL << 19)
#define UBLK_F_IO_DESC_SIZE (1ULL << 20)

/* dev_info.state */
#define UBLK_S_DEV_DEAD 0
#define UBLK_S_DEV_LIVE 1
#define UBLK_S_DEV_QUIESCED 2

/* ublksrv_io_desc.op_flags */
#define UBLK_IO_OP_READ 0
#define UBLK_IO_OP_WRITE 1
#define UBLK_IO_OP_FLUSH 2
#define UBLK_IO_OP_DISCARD 3
#define UBLK_IO_OP_WRITE_SAME 4
#define UBLK_IO_OP_WRITE_ZEROES 5
#define UBLK_IO_F_FUA (1U << 13)
#define UBLK_IO_F_NOUNMAP (1U << 15)

/* ublk_params */
#define UBLK_ATTR_READ_ONLY (1U << 0)
#define UBLK_ATTR_ROTATIONAL (1U << 1)
#define UBLK_ATTR_VOLATILE_CACHE (1U << 2)
#define UBLK_ATTR_FUA (1U << 3)
#define UBLK_PARAM_TYPE_BASIC (1U << 0)
#define UBLK_PARAM_TYPE_DISCARD (1U << 1)
#define UBLK_PARAM_TYPE_DEVT (1U << 2)
#define UBLK_PARAM_TYPE_ZONED (1U << 3)

struct ublksrv_ctrl_cmd {
	uint32_t dev_id;
	uint16_t queue_id; /* 0xffff unless the command is per queue */
	uint16_t len;
	uint64_t addr;
	uint64_t data[1];
	uint16_t dev_path_len;
	uint16_t pad;
	uint32_t reserved;
};

struct ublksrv_ctrl_dev_info {
	uint16_t nr_hw_queues;
	uint16_t queue_depth;
	uint16_t state;
	uint16_t pad0;
	uint32_t max_io_buf_bytes;
	uint32_t dev_id;
	int32_t ublksrv_pid;
	uint32_t pad1;
	uint64_t flags;
	uint64_t ublksrv_flags;
	uint32_t owner_uid;
	uint32_t owner_gid;
	uint64_t reserved1;
	uint64_t reserved2;
};

struct ublksrv_io_desc {
	uint32_t op_flags; /* op in bits 0-7, flags above */
	uint32_t nr_sectors;
	uint64_t start_sector;
	uint64_t addr;
};

struct ublksrv_io_cmd {
	uint16_t q_id;
	uint16_t tag;
	int32_t result;
	uint64_t addr;
};

struct ublk_param_basic {
	uint32_t attrs;
	uint8_t logical_bs_shift;
	uint8_t physical_bs_shift;
	uint8_t io_opt_shift;
	uint8_t io_min_shift;
	uint32_t max_sectors;
	uint32_t chunk_sectors;
	uint64_t dev_sectors;
	uint64_t virt_boundary_mask;
};

struct ublk_param_discard {
	uint32_t discard_alignment;
	uint32_t discard_granularity;
	uint32_t max_discard_sectors;
	uint32_t max_write_zeroes_sectors;
	uint16_t max_discard_segments;
	uint16_t reserved0;
};

struct ublk_param_devt {
	uint32_t char_major;
	uint32_t char_minor;
	uint32_t disk_major;
	uint32_t disk_minor;
};

struct ublk_param_zoned {
	uint32_t max_open_zones;
	uint32_t max_active_zones;
	uint32_t max_zone_append_sectors;
	uint8_t reserved[20];
};

struct ublk_params {
	uint32_t len; /* size of the struct as this program understands it */
	uint32_t types;
	struct ublk_param_basic basic;
	struct ublk_param_discard discard;
	struct ublk_param_devt devt;
	struct ublk_param_zoned zoned;
};

_Static_assert(sizeof(struct ublksrv_ctrl_cmd) == 32, "ctrl_cmd size");
_Static_assert(offsetof(struct ublksrv_ctrl_cmd, addr) == 8, "ctrl_cmd.addr");
_Static_assert(offsetof(struct ublksrv_ctrl_cmd, data) == 16, "ctrl_cmd.data");
_Static_assert(offsetof(struct ublksrv_ctrl_cmd, dev_path_len) == 24,
	       "ctrl_cmd.dev_path_len");
_Static_assert(sizeof(struct ublksrv_ctrl_dev_info) == 64, "dev_info size");
_Static_assert(offsetof(struct ublksrv_ctrl_dev_info, flags) == 24,
	       "dev_info.flags");
_Static_assert(offsetof(struct ublksrv_ctrl_dev_info, owner_uid) == 40,
	       "dev_info.owner_uid");
_Static_assert(sizeof(struct ublksrv_io_desc) == 24, "io_desc size");
_Static_assert(sizeof(struct ublksrv_io_cmd) == 16, "io_cmd size");
_Static_assert(sizeof(struct ublk_param_basic) == 32, "param_basic size");
_Static_assert(sizeof(struct ublk_param_discard) == 20, "param_discard size");
_Static_assert(offsetof(struct ublk_params, basic) == 8, "params.basic");
_Static_assert(offsetof(struct ublk_params, discard) == 40, "params.discard");
_Static_assert(offsetof(struct ublk_params, devt) == 60, "params.devt");
_Static_assert(offsetof(struct ublk_params, zoned) == 76, "params.zoned");
_Static_assert(sizeof(struct ublk_params) == 112, "params size");

/* ioctl-style encodings (6.4+); the kernel dispatches on _IOC_NR. */
#define UBLK_U_CTRL_R(nr) _IOR('u', nr, struct ublksrv_ctrl_cmd)
#define UBLK_U_CTRL_RW(nr) _IOWR('u', nr, struct ublksrv_ctrl_cmd)
#define UBLK_U_IO_FETCH_REQ _IOWR('u', UBLK_IO_FETCH_REQ, struct ublksrv_io_cmd)
#define UBLK_U_IO_COMMIT_AND_FETCH_REQ \
	_IOWR('u', UBLK_IO_COMMIT_AND_FETCH_REQ, struct ublksrv_io_cmd)

_Static_assert(UBLK_U_CTRL_RW(UBLK_CMD_ADD_DEV) == 0xC0207504, "ADD_DEV op");
_Static_assert(UBLK_U_CTRL_R(UBLK_CMD_GET_FEATURES) == 0x80207513,
	       "GET_FEATURES op");
_Static_assert(UBLK_U_IO_FETCH_REQ == 0xC0107520, "FETCH_REQ op");

#endif
