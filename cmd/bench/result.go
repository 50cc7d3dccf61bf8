//go:build linux

package main

// result is one row: one backend running one variant of one workload.
// Its JSON form is the schema's results[] element.
type result struct {
	Workload     string   `json:"workload"`
	Backend      string   `json:"backend"`
	BlockSize    int      `json:"block_size_bytes"`
	Jobs         int      `json:"jobs"`
	Depth        int      `json:"depth"`
	Ops          int64    `json:"ops"`
	Seconds      float64  `json:"seconds"`
	IOPS         float64  `json:"iops"`
	BW           float64  `json:"bw_bytes_per_sec"`
	Lat          latency  `json:"lat_ns"`
	CPUPerOp     float64  `json:"cpu_seconds_per_op"`
	AllocsPerOp  *float64 `json:"allocs_per_op"`  // null for fio
	SQEsPerEnter *float64 `json:"sqes_per_enter"` // null unless an io_uring engine entered the kernel
	SpeedupVsOS  *float64 `json:"speedup_vs_os"`  // null without an os row to compare with
	Error        string   `json:"error"`
	// Notes explain what a reader could misjudge (cache misses in a hot
	// cell, sampled latency).
	Notes []string `json:"notes,omitempty"`

	variant variant `json:"-"`
}

type latency struct {
	P50 int64 `json:"p50"`
	P99 int64 `json:"p99"`
	Max int64 `json:"max"`
}

func ptr(f float64) *float64 { return &f }

// finish derives the rates from ops, bytes and seconds.
func (r *result) finish() {
	if r.Seconds > 0 {
		r.IOPS = float64(r.Ops) / r.Seconds
		r.BW = float64(r.Ops) * float64(r.BlockSize) / r.Seconds
	}
}

// setSpeedups fills speedup_vs_os: each row's IOPS over the os row of the
// same workload with as many operations in flight (jobs × depth), so that
// one goroutine with Submit batches of 32, or fio with one job at depth
// 32, is compared with os's 32 goroutines. A row with no such os row
// gets none.
func setSpeedups(rs []result) {
	for i := range rs {
		r := &rs[i]
		if r.Error != "" {
			continue
		}
		for j := range rs {
			o := &rs[j]
			if o.Backend == "os" && o.Workload == r.Workload && o.Error == "" && o.IOPS > 0 &&
				o.Jobs*o.Depth == r.Jobs*r.Depth {
				r.SpeedupVsOS = ptr(r.IOPS / o.IOPS)
				break
			}
		}
	}
}
