//go:build linux

package uring

import "unsafe"

// The kernel ABI of io_uring, transcribed from the uapi header
// linux/io_uring.h. Only what ringfs uses is declared.

// sqe is struct io_uring_sqe (64 bytes).
type sqe struct {
	opcode      uint8
	flags       uint8
	ioprio      uint16
	fd          int32
	off         uint64 // also addr2
	addr        uint64
	len         uint32
	opFlags     uint32 // rw_flags, fsync_flags, sync_range_flags, cancel_flags
	userData    uint64
	bufIndex    uint16
	personality uint16
	fileIndex   uint32 // also splice_fd_in
	addr3       uint64
	pad2        uint64
}

// cqe is struct io_uring_cqe (16 bytes; CQE32 is not used).
type cqe struct {
	userData uint64
	res      int32
	flags    uint32
}

type sqRingOffsets struct {
	head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
	resv2                                                           uint64
}

type cqRingOffsets struct {
	head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
	resv2                                                           uint64
}

// params is struct io_uring_params.
type params struct {
	sqEntries    uint32
	cqEntries    uint32
	flags        uint32
	sqThreadCPU  uint32
	sqThreadIdle uint32
	features     uint32
	wqFd         uint32
	resv         [3]uint32
	sqOff        sqRingOffsets
	cqOff        cqRingOffsets
}

// getEventsArg is struct io_uring_getevents_arg (IORING_ENTER_EXT_ARG).
type getEventsArg struct {
	sigmask   uint64
	sigmaskSz uint32
	pad       uint32
	ts        uint64
}

type probeOp struct {
	op    uint8
	resv  uint8
	flags uint16
	resv2 uint32
}

// probeOps is the number of opcode slots ringfs asks the kernel to fill.
const probeOps = 256

type probeABI struct {
	lastOp uint8
	opsLen uint8
	resv   uint16
	resv2  [3]uint32
	ops    [probeOps]probeOp
}

type rsrcUpdate struct {
	offset uint32
	resv   uint32
	data   uint64
}

// Compile-time checks of the struct sizes the kernel expects.
var (
	_ [64 - unsafe.Sizeof(sqe{})]byte
	_ [unsafe.Sizeof(sqe{}) - 64]byte
	_ [16 - unsafe.Sizeof(cqe{})]byte
	_ [unsafe.Sizeof(cqe{}) - 16]byte
	_ [120 - unsafe.Sizeof(params{})]byte
	_ [unsafe.Sizeof(params{}) - 120]byte
	_ [24 - unsafe.Sizeof(getEventsArg{})]byte
	_ [unsafe.Sizeof(getEventsArg{}) - 24]byte
)

// Setup flags.
const (
	setupSQPoll    = 1 << 1
	setupCQSize    = 1 << 3
	setupClamp     = 1 << 4
	setupSubmitAll = 1 << 7
)

// Feature bits reported by io_uring_setup.
const (
	FeatSingleMmap     = 1 << 0
	FeatNoDrop         = 1 << 1
	FeatSubmitStable   = 1 << 2
	FeatRWCurPos       = 1 << 3
	FeatCurPersonality = 1 << 4
	FeatFastPoll       = 1 << 5
	FeatPoll32Bits     = 1 << 6
	FeatSQPollNonfixed = 1 << 7
	FeatExtArg         = 1 << 8
	FeatNativeWorkers  = 1 << 9
	FeatRsrcTags       = 1 << 10
	FeatCQESkip        = 1 << 11
	FeatLinkedFile     = 1 << 12
	FeatRegRegRing     = 1 << 13
	FeatRecvsendBundle = 1 << 14
	FeatMinTimeout     = 1 << 15
	FeatRWAttr         = 1 << 16
	FeatNoIOWait       = 1 << 17
)

// FeatureNames maps each feature bit to the name used in the uapi header.
var FeatureNames = []struct {
	Bit  uint32
	Name string
}{
	{FeatSingleMmap, "SINGLE_MMAP"},
	{FeatNoDrop, "NODROP"},
	{FeatSubmitStable, "SUBMIT_STABLE"},
	{FeatRWCurPos, "RW_CUR_POS"},
	{FeatCurPersonality, "CUR_PERSONALITY"},
	{FeatFastPoll, "FAST_POLL"},
	{FeatPoll32Bits, "POLL_32BITS"},
	{FeatSQPollNonfixed, "SQPOLL_NONFIXED"},
	{FeatExtArg, "EXT_ARG"},
	{FeatNativeWorkers, "NATIVE_WORKERS"},
	{FeatRsrcTags, "RSRC_TAGS"},
	{FeatCQESkip, "CQE_SKIP"},
	{FeatLinkedFile, "LINKED_FILE"},
	{FeatRegRegRing, "REG_REG_RING"},
	{FeatRecvsendBundle, "RECVSEND_BUNDLE"},
	{FeatMinTimeout, "MIN_TIMEOUT"},
	{FeatRWAttr, "RW_ATTR"},
	{FeatNoIOWait, "NO_IOWAIT"},
}

// SQE flags.
const (
	sqeFixedFile = 1 << 0
	sqeIODrain   = 1 << 1
)

// Kernel opcodes (enum io_uring_op).
const (
	opNop           = 0
	opReadv         = 1
	opWritev        = 2
	opFsync         = 3
	opReadFixed     = 4
	opWriteFixed    = 5
	opSyncFileRange = 8
	opAsyncCancel   = 14
	opFallocate     = 17
	opRead          = 22
	opWrite         = 23
	opFtruncate     = 55 // Linux 6.9
)

// Ring flags and offsets.
const (
	sqNeedWakeup = 1 << 0
	sqCQOverflow = 1 << 1

	enterGetEvents = 1 << 0
	enterSQWakeup  = 1 << 1
	enterSQWait    = 1 << 2
	enterExtArg    = 1 << 3

	offSQRing = 0
	offCQRing = 0x8000000
	offSQEs   = 0x10000000

	// FsyncDatasync is IORING_FSYNC_DATASYNC: an OpFsync with this flag
	// is fdatasync.
	FsyncDatasync = 1 << 0

	cancelFD  = 1 << 1
	cancelAll = 1 << 0
	cancelAny = 1 << 2

	opSupported = 1 << 0
)

// io_uring_register opcodes.
const (
	regBuffers     = 0
	unregBuffers   = 1
	regFiles       = 2
	unregFiles     = 3
	regFilesUpdate = 6
	regProbe       = 8
)

// maxRW is the kernel's per-call byte cap (MAX_RW_COUNT).
const maxRW = 0x7ffff000

// maxIovecs is IOV_MAX: the most iovecs one readv/writev may carry.
const maxIovecs = 1024
