#!/usr/bin/env bash
# Device calls (Firecracker machines only: ncu reads counters there; each target up to 170 s, so
# at most three a call: NCU_TARGETS picks them; default infer, infer_gluon_ws, scan_fwd, 510 s;
# next: NCU_TARGETS="stats_model infer_gluon_model infer_gluon_ws"):
# Nsight Compute on one call (an NVTX range, after autotuning) of the kernels behind the open targets
# (benchmarks/ncu_targets.py). Speed of light, memory workload, warp states (what stalls the
# warps), scheduler and occupancy; CSV pages into OUTDIR. Clocks left alone (--clock-control none).
#
#   [NCU_TARGETS="..."] bash benchmarks/ncu_round.sh [OUTDIR]
source "$(dirname "$0")/_gpu_round_prelude.sh"
SECTIONS="--section SpeedOfLight --section MemoryWorkloadAnalysis --section WarpStateStats --section SchedulerStats --section Occupancy --section LaunchStats --section ComputeWorkloadAnalysis"
prof() {  # name, kernel regex
  timeout 170 ncu --clock-control none --nvtx --nvtx-include "profile/" $SECTIONS -k "regex:$2" \
      --csv --page details python benchmarks/ncu_targets.py "$1" > "$OUTDIR/ncu_$1.csv" 2> "$OUTDIR/ncu_$1.err"
  echo "$1: rc=$? $(wc -l < "$OUTDIR/ncu_$1.csv") lines"
  grep -E '"(Duration|Memory Throughput|DRAM Throughput|Compute \(SM\) Throughput|Registers Per Thread|Achieved Occupancy|Issue Slots Busy|No Eligible)"' "$OUTDIR/ncu_$1.csv" | cut -d, -f5,13- | head -24
}
declare -A REGEX=([infer]="mlp_kernel|_fwd_stats|finalize" [infer_gluon_ws]="mlp_kernel_gluon_ws|_fwd_stats|finalize"
                  [infer_gluon_c]="mlp_kernel_gluon|_fwd_stats|finalize" [scan_fwd]="_fwd|_summ"
                  [infer_gluon_model]="mlp_kernel_gluon_ws|_fwd_stats|finalize" [stats_model]="_fwd_stats")
for t in ${NCU_TARGETS:-infer infer_gluon_ws scan_fwd}; do
  prof "$t" "${REGEX[$t]}"
done
