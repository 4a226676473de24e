#!/usr/bin/env bash
# Peer benchmark of the NBD server: fio's nbd engine, in one run, against
# shadowbench, nbdkit's memory plugin, qemu-nbd serving a raw file on tmpfs,
# and go-nbd's server over a shadowbench memory LUN; then shadowbench again
# with a snapshot of the LUN taken every second; then the durable peers:
# shadowbench --data-dir against nbdkit's file plugin and qemu-nbd on a raw
# file, all in DURABLE_DIR. nbdkit's null plugin (nbdkit-null: no data, no
# work) runs beside them as the ceiling of the transport, not as a rival.
# Prints the machine, then IOPS, MiB/s, p99 latency, each peer's ratio to
# shadowbench (to shadowbench-durable for the durable ones) and to
# nbdkit-null (the ceiling column); and for
# the durable peers the FLUSH latency of 4k-randwrite-qd1-fsync1, a write and
# an NBD FLUSH in turn: fio's sync latency percentiles, p50 and p99.
#
#   JOBS=fsync1 PEERS="shadowbench-durable qemu-nbd-file nbdkit-file" ROUNDS=5 scripts/bench-nbd.sh
#
#   RUNTIME=5 ROUNDS=3 SIZE=1G scripts/bench-nbd.sh
#   JOBS=1m-write PEERS="shadowbench shadowbench-snap" scripts/bench-nbd.sh
#   PEERS="shadowbench-durable nbdkit-file qemu-nbd-file" DURABLE_DIR=/dev/shm/d scripts/bench-nbd.sh
#
# A before-and-after in one run: BASELINE_BIN=path/to/an/older/shadowbench
# adds the peer shadowbench-baseline, that binary serving a LUN as
# shadowbench does.
#
#   BASELINE_BIN=/tmp/old PEERS="shadowbench shadowbench-baseline nbdkit-null" JOBS=1m-read scripts/bench-nbd.sh
#
# Each job runs ROUNDS times on every peer, interleaved; the table shows the
# median round. PEERS and JOBS (words matched against the job names) narrow
# the run; the first peer is the one ratios are taken against.
#
# Needs fio, nbdkit, qemu-nbd (Debian: fio nbdkit qemu-utils) and jq.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNTIME=${RUNTIME:-5}
ROUNDS=${ROUNDS:-3}
SIZE=${SIZE:-1G}
OUT=${OUT:-$(mktemp -d)}
BASE_PORT=${BASE_PORT:-10900}

for tool in fio nbdkit qemu-nbd jq; do
  command -v "$tool" >/dev/null || { echo "bench-nbd: $tool is missing (apt-get install fio nbdkit qemu-utils jq)" >&2; exit 1; }
done
fio --enghelp=nbd >/dev/null 2>&1 || { echo "bench-nbd: this fio has no nbd engine" >&2; exit 1; }

go build -o "$OUT/shadowbench" ./cmd/shadowbench
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -f /dev/shm/shadowbench-bench-nbd.raw
  if [ -n "${DURABLE_DIR:-}" ]; then
    rm -rf "$DURABLE_DIR/shadowbench" "$DURABLE_DIR/nbdkit.raw" "$DURABLE_DIR/qemu-nbd.raw"
  fi
}
trap cleanup EXIT

wait_port() {
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "bench-nbd: nothing listens on port $1" >&2
  return 1
}

# peer name -> "uri", for the peers started
declare -A uri pid
start_peer() {
  local name=$1 port=$2; shift 2
  "$@" >"$OUT/$name.log" 2>&1 &
  pids+=($!)
  pid[$name]=$!
  wait_port "$port"
}

# cpu_ticks PID prints the user and system time the process has used, in
# clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }

# The durable peers keep their data in DURABLE_DIR: on the disk by default,
# DURABLE_DIR=/dev/shm/... for tmpfs.
DURABLE_DIR=${DURABLE_DIR:-$OUT/durable}
mkdir -p "$DURABLE_DIR"
all_peers="shadowbench shadowbench-baseline nbdkit-null nbdkit-memory qemu-nbd go-nbd shadowbench-snap shadowbench-durable nbdkit-file qemu-nbd-file"
read -r -a peers <<<"${PEERS:-shadowbench nbdkit-null nbdkit-memory qemu-nbd go-nbd shadowbench-snap shadowbench-durable nbdkit-file qemu-nbd-file}"
P=$BASE_PORT
for peer in "${peers[@]}"; do
  case $peer in
  shadowbench)
    start_peer "$peer" $((P+1)) "$OUT/shadowbench" serve --api "" --listen 127.0.0.1:$((P+1)) --lun name=lun0,size=$SIZE
    uri[$peer]="nbd://127.0.0.1:$((P+1))/lun0" ;;
  shadowbench-baseline)
    [ -n "${BASELINE_BIN:-}" ] || { echo "bench-nbd: shadowbench-baseline needs BASELINE_BIN" >&2; exit 1; }
    start_peer "$peer" $((P+10)) "$BASELINE_BIN" serve --api "" --listen 127.0.0.1:$((P+10)) --lun name=lun0,size=$SIZE
    uri[$peer]="nbd://127.0.0.1:$((P+10))/lun0" ;;
  shadowbench-snap)
    start_peer "$peer" $((P+2)) "$OUT/shadowbench" serve --listen 127.0.0.1:$((P+2)) --lun name=lun0,size=$SIZE --snapshot-interval 1s
    uri[$peer]="nbd://127.0.0.1:$((P+2))/lun0" ;;
  nbdkit-null)
    start_peer "$peer" $((P+9)) nbdkit -f -i 127.0.0.1 -p $((P+9)) null "$SIZE"
    uri[$peer]="nbd://127.0.0.1:$((P+9))/" ;;
  nbdkit-memory)
    start_peer "$peer" $((P+3)) nbdkit -f -i 127.0.0.1 -p $((P+3)) memory "$SIZE"
    uri[$peer]="nbd://127.0.0.1:$((P+3))/" ;;
  qemu-nbd)
    truncate -s "$SIZE" /dev/shm/shadowbench-bench-nbd.raw
    start_peer "$peer" $((P+4)) qemu-nbd -f raw -b 127.0.0.1 -p $((P+4)) -t -e 16 --cache=writeback /dev/shm/shadowbench-bench-nbd.raw
    uri[$peer]="nbd://127.0.0.1:$((P+4))/" ;;
  go-nbd)
    start_peer "$peer" $((P+5)) "$OUT/shadowbench" serve --engine go-nbd --listen 127.0.0.1:$((P+5)) --lun name=lun0,size=$SIZE
    uri[$peer]="nbd://127.0.0.1:$((P+5))/lun0" ;;
  shadowbench-durable)
    start_peer "$peer" $((P+6)) "$OUT/shadowbench" serve --api "" --listen 127.0.0.1:$((P+6)) \
      --data-dir "$DURABLE_DIR/shadowbench" --lun name=lun0,size=$SIZE
    uri[$peer]="nbd://127.0.0.1:$((P+6))/lun0" ;;
  nbdkit-file)
    truncate -s "$SIZE" "$DURABLE_DIR/nbdkit.raw"
    start_peer "$peer" $((P+7)) nbdkit -f -i 127.0.0.1 -p $((P+7)) file "$DURABLE_DIR/nbdkit.raw"
    uri[$peer]="nbd://127.0.0.1:$((P+7))/" ;;
  qemu-nbd-file)
    truncate -s "$SIZE" "$DURABLE_DIR/qemu-nbd.raw"
    start_peer "$peer" $((P+8)) qemu-nbd -f raw -b 127.0.0.1 -p $((P+8)) -t -e 16 --cache=writeback "$DURABLE_DIR/qemu-nbd.raw"
    uri[$peer]="nbd://127.0.0.1:$((P+8))/" ;;
  *)
    echo "bench-nbd: PEERS: unknown peer $peer (have: $all_peers)" >&2; exit 1 ;;
  esac
done

# Ratios are taken against shadowbench-durable for the durable peers and
# against the first peer for the others.
ref_of() {
  case $1 in
  shadowbench-durable|nbdkit-file|qemu-nbd-file)
    [[ " ${peers[*]} " == *" shadowbench-durable "* ]] && { echo shadowbench-durable; return; } ;;
  esac
  echo "${peers[0]}"
}

is_durable() {
  case $1 in shadowbench-durable|nbdkit-file|qemu-nbd-file) return 0 ;; esac
  return 1
}

# job name -> fio arguments, and "|durable" for the jobs only the durable
# peers run (a FLUSH in memory measures nothing but the round trip)
jobs=(
  "4k-randread-qd16x4|--rw=randread --bs=4k --iodepth=16 --numjobs=4"
  "4k-randwrite-qd16x4|--rw=randwrite --bs=4k --iodepth=16 --numjobs=4"
  "4k-randwrite-qd1|--rw=randwrite --bs=4k --iodepth=1 --numjobs=1"
  "1m-read-qd8x2|--rw=read --bs=1m --iodepth=8 --numjobs=2"
  "1m-write-qd8x2|--rw=write --bs=1m --iodepth=8 --numjobs=2"
  "4k-randwrite-qd16x4-fsync32|--rw=randwrite --bs=4k --iodepth=16 --numjobs=4 --fsync=32"
  "4k-randwrite-qd1-fsync1|--rw=randwrite --bs=4k --iodepth=1 --numjobs=1 --fsync=1|durable"
)
if [ -n "${JOBS:-}" ]; then
  picked=()
  for job in "${jobs[@]}"; do
    for w in $JOBS; do
      [[ ${job%%|*} == *"$w"* ]] && { picked+=("$job"); break; }
    done
  done
  [ ${#picked[@]} -gt 0 ] || { echo "bench-nbd: JOBS=$JOBS matches no job" >&2; exit 1; }
  jobs=("${picked[@]}")
fi

# Every export starts full of data, so reads read data everywhere rather
# than whatever holes the earlier jobs left.
for peer in "${peers[@]}"; do
  echo "== prefill $peer" >&2
  fio --name=prefill --ioengine=nbd --uri="${uri[$peer]}" --size="$SIZE" --rw=write --bs=1m \
    --iodepth=8 >/dev/null 2>"$OUT/prefill.$peer.err" \
    || echo "bench-nbd: prefill failed on $peer: $(tail -n 3 "$OUT/prefill.$peer.err")" >&2
done

# Rounds go over every job and peer in turn, so a slow spell of the machine
# falls on all of them; the table shows each one's median round. Each round
# starts one peer further down the list, so that no peer always runs right
# after the same neighbour (the one snapshotting every second, say).
npeers=${#peers[@]}
for round in $(seq "$ROUNDS"); do
  for job in "${jobs[@]}"; do
    jname=${job%%|*}; jargs=${job#*|}; only=""
    [[ $jargs == *"|"* ]] && { only=${jargs#*|}; jargs=${jargs%%|*}; }
    for k in $(seq 0 $((npeers - 1))); do
      peer=${peers[$(((round - 1 + k) % npeers))]}
      [ "$only" = durable ] && ! is_durable "$peer" && [ "$peer" != nbdkit-null ] && continue
      echo "== round $round/$ROUNDS: $jname on $peer (${RUNTIME}s)" >&2
      # shellcheck disable=SC2086
      fio --name="$jname" --ioengine=nbd --uri="${uri[$peer]}" --size="$SIZE" $jargs \
        --time_based --runtime="$RUNTIME" --ramp_time=1 --group_reporting \
        --output-format=json --output="$OUT/$jname.$peer.$round.json" >/dev/null 2>"$OUT/$jname.$peer.err" &
      fiopid=$!
      # The server's CPU time over the measured part of the run (after the
      # ramp), for the CPU per request column.
      sleep 1; t0=$(cpu_ticks "${pid[$peer]}")
      wait $fiopid || echo "bench-nbd: fio failed for $jname on $peer: $(tail -n 3 "$OUT/$jname.$peer.err")" >&2
      echo $(($(cpu_ticks "${pid[$peer]}") - t0)) >"$OUT/$jname.$peer.$round.cpu"
    done
  done
done

# median FILE... prints "IOPS MiB/s p99-us cpu-us" of the round with the
# median IOPS; cpu-us is the server's CPU time per request in that round
# (user and system, from /proc, over the measured seconds).
tick_us=$((1000000 / $(getconf CLK_TCK)))
median() {
  local f c
  for f in "$@"; do
    c=$(cat "${f%.json}.cpu" 2>/dev/null || echo 0)
    [ -s "$f" ] && jq -r --argjson ticks "$c" --argjson tick "$tick_us" --argjson secs "$RUNTIME" '.jobs[0] | (if .read.io_bytes > 0 then .read else .write end) |
      "\(.iops) \(.bw_bytes/1048576) \((.clat_ns.percentile["99.000000"] // 0)/1000) \(if .iops > 0 then $ticks * $tick / (.iops * $secs) else 0 end)"' "$f"
  done | sort -n | awk '{ r[NR] = $0 } END { if (NR) print r[int((NR + 1) / 2)] }'
}

# The machine line: the figures mean nothing without the CPU they came from.
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
fam=$(awk -F': ' '/^cpu family/ { f = $2 } /^model[[:space:]]*:/ { m = $2 } /^vendor_id/ { v = $2 } END { printf "%s family %s model %s", v, f, m }' /proc/cpuinfo)
echo
echo "machine: ${cpu:-unknown CPU} ($fam), $(nproc) cores, $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%Y-%m-%d)"

# The ceiling column is each peer's IOPS over nbdkit-null's in the same job.
has_null=false
[[ " ${peers[*]} " == *" nbdkit-null "* ]] && has_null=true
printf '\n%-22s %-20s %10s %9s %10s %8s %8s %9s\n' job peer IOPS MiB/s p99-us ratio ceiling cpu-us/op
for job in "${jobs[@]}"; do
  jname=${job%%|*}
  read -r ceil _ < <(median "$OUT/$jname.nbdkit-null".*.json) || true
  for peer in "${peers[@]}"; do
    [[ $job == *"|durable" ]] && ! is_durable "$peer" && [ "$peer" != nbdkit-null ] && continue
    read -r iops mibs p99 cpu < <(median "$OUT/$jname.$peer".*.json) || true
    [ -n "${iops:-}" ] || { printf '%-22s %-20s %10s\n' "$jname" "$peer" failed; continue; }
    read -r ref _ < <(median "$OUT/$jname.$(ref_of "$peer")".*.json) || true
    ratio=$(jq -n "$iops / ${ref:-$iops}")
    if [ "$peer" = nbdkit-null ]; then ratio=ceiling; else ratio=$(printf '%.2f' "$ratio"); fi
    c=-
    $has_null && [ -n "${ceil:-}" ] && c=$(jq -n "$iops / $ceil" | xargs printf '%.2f')
    printf '%-22s %-20s %10.0f %9.1f %10.1f %8s %8s %9.1f\n' "$jname" "$peer" "$iops" "$mibs" "$p99" "$ratio" "$c" "$cpu"
    iops=""
  done
  ceil=""
done

# flush_median FILE... prints "p50-us p99-us": the medians over the rounds
# of the p50 and of the p99 of fio's sync (FLUSH) latencies, each taken on
# its own (the p99 of a 5 s round is a few dozen FLUSHes, and moves with the
# machine more than the p50 does).
flush_median() {
  local f col
  for col in 50 99; do
    for f in "$@"; do
      [ -s "$f" ] && jq -r ".jobs[0].sync.lat_ns.percentile[\"$col.000000\"] // empty | . / 1000" "$f"
    done | sort -n | awk '{ r[NR] = $0 } END { if (NR) print r[int((NR + 1) / 2)] }'
  done | paste -sd ' '
}

flush_jobs=()
for job in "${jobs[@]}"; do
  a=${job#*|}; a=${a%%|*}
  [[ " $a " == *" --fsync=1 "* ]] && flush_jobs+=("${job%%|*}")
done
if [ ${#flush_jobs[@]} -gt 0 ]; then
  printf '\n%-22s %-20s %10s %10s %9s %9s\n' "FLUSH latency" peer p50-us p99-us p50-ratio p99-ratio
  for jname in "${flush_jobs[@]}"; do
    for peer in "${peers[@]}"; do
      is_durable "$peer" || continue
      read -r p50 p99 < <(flush_median "$OUT/$jname.$peer".*.json) || true
      [ -n "${p50:-}" ] || { printf '%-22s %-20s %10s\n' "$jname" "$peer" failed; continue; }
      read -r r50 r99 < <(flush_median "$OUT/$jname.$(ref_of "$peer")".*.json) || true
      printf '%-22s %-20s %10.1f %10.1f %9.2f %9.2f\n' "$jname" "$peer" "$p50" "$p99" \
        "$(jq -n "${r50:-$p50} / $p50")" "$(jq -n "${r99:-$p99} / $p99")"
      p50=""
    done
  done
fi

echo
echo "Median of $ROUNDS rounds of ${RUNTIME}s. Ratios are IOPS relative to ${peers[0]}, and for the durable peers (data in $DURABLE_DIR) to shadowbench-durable; shadowbench-snap takes a snapshot of lun0 every second."
echo "cpu-us/op: the server process's CPU time (user and system, /proc/PID/stat) per request in the median round; fio's own CPU is not in it."
$has_null && echo "ceiling: IOPS relative to nbdkit-null, which reads zeros and drops writes: what the transport, fio and the loopback allow, not a rival."
[ ${#flush_jobs[@]} -eq 0 ] || echo "FLUSH latency: medians over the rounds of fio's sync latency p50 and p99; their ratios are shadowbench-durable's latency over the peer's, so above 1.0 the peer flushes faster."
echo "Raw fio output: $OUT"
