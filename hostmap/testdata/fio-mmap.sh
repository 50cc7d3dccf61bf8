#!/usr/bin/env bash
# fio-mmap.sh: the fio baseline for BenchmarkReadAt.
#
# Runs fio's mmap engine with 4 KiB random reads over a hot 1 GiB file (one
# job, 10 s, time based) and prints its IOPS. With --bench it then runs
# BenchmarkReadAt on the same file with RINGFS_FIO_IOPS set, so that the
# hostmap sub-benchmark also reports x_fio (its IOPS over fio's).
#
#   hostmap/testdata/fio-mmap.sh            # fio only
#   hostmap/testdata/fio-mmap.sh --bench    # fio, then the Go benchmark
#
# Environment: FIO_RUNTIME (seconds, default 10), BENCHTIME (default 3s),
# RINGFS_BENCH_FILE (use this file instead of a temporary one; it must be at
# least 1 GiB). fio is in Debian/Ubuntu as "fio" (apt-get install -y fio).
set -euo pipefail

if ! command -v fio >/dev/null; then
	echo "fio is not installed (apt-get install -y fio)" >&2
	exit 2
fi

here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/hostmap-fio.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
file=${RINGFS_BENCH_FILE:-$tmp/hot}
runtime=${FIO_RUNTIME:-10}

# fio lays the file out (writes all of it) when it is missing or short, but
# may leave it out of the page cache; read it once so that the measured run
# is all cache hits (--invalidate=0 keeps fio from dropping it again).
if [[ ! -f $file ]] || (($(stat -c %s "$file") < 1 << 30)); then
	fio --name=layout --ioengine=psync --rw=write --bs=1m --size=1g \
		--filename="$file" --create_only=1 >/dev/null
fi
cat "$file" >/dev/null

fio --name=mmap --ioengine=mmap --rw=randread --bs=4k --size=1g \
	--filename="$file" --time_based --runtime="$runtime" --invalidate=0 \
	--output-format=json >"$tmp/fio.json"

field() { sed -n "s/^ *\"$1\" : \([0-9.]*\),\$/\1/p" "$tmp/fio.json" | head -n 1; }
iops=$(field iops)
usr=$(field usr_cpu)
sys=$(field sys_cpu)
if [[ -z $iops || -z $usr || -z $sys ]]; then
	echo "could not find IOPS and CPU use in fio's output:" >&2
	cat "$tmp/fio.json" >&2
	exit 1
fi
# IOPS per CPU second: what fio would do with a core to itself, which is
# what the Go benchmark's IOPS/cpu also reports.
per_cpu=$(awk -v i="$iops" -v u="$usr" -v s="$sys" 'BEGIN { printf "%.0f", i * 100 / (u + s) }')
echo "fio mmap randread 4KiB, 1 job, ${runtime}s: $iops IOPS, cpu usr ${usr}% sys ${sys}%, $per_cpu IOPS per CPU second"

if [[ ${1:-} == --bench ]]; then
	cd "$here/.."
	RINGFS_FIO_IOPS=$iops RINGFS_FIO_IOPS_PER_CPU=$per_cpu RINGFS_BENCH_FILE=$file \
		go test -run '^$' -bench '^BenchmarkReadAt$' -benchtime="${BENCHTIME:-3s}" .
fi
