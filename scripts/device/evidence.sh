#!/usr/bin/env bash
# GPU evidence for a lent device machine (see README "GPU"): one prepared run, CPU and GPU of the
# same machine side by side, FEGPU_TIMING=1. Usage on the device (repo root):
#   bash scripts/device/evidence.sh [quick|full]   with .devbin/fegpu.gz (stripped release) and
#   .gl/*.deb (Vulkan loader) carried. Output: stdout and $OUT/evidence.log.
set -u
MODE=${1:-full}
for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
if [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]; then
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
fi
gunzip -c .devbin/fegpu.gz > /tmp/fegpu && chmod +x /tmp/fegpu
F=/tmp/fegpu
LOG=${OUT:-/tmp}/evidence.log
exec > >(tee "$LOG") 2>&1
T() { echo "### $*"; FEGPU_TIMING=1 /usr/bin/time -f "wall %e s, peak %M KB" "$@" > /tmp/out.json; echo
  grep -E '"(seconds|backend|estimate|estimate_group1|difference|p|std_error)"' /tmp/out.json | head -8; echo; }
nproc; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null
$F devices --selftest || $F devices   # df64 self-test of the real GPU, check by check
$F demo --out /tmp/d.csv >/dev/null
awk -F, 'NR==1{print $0",c39";next}{print $0","($5=="C39"?1:0)}' /tmp/d.csv > /tmp/dg.csv
X="digtech + age + finance + profit + klratio + turnover + lnlp + lev + open + market + lnpergdp + xr"
M="qua ~ $X | firm + year + firm^dest"
W="qua ~ $X | firm + year"
for b in gpu cpu; do
  T $F bdiff /tmp/dg.csv "$M" --group c39 --reps 1000 --backend $b --format json
done
T $F bdiff /tmp/dg.csv "$M" --group c39 --reps 1000 --backend gpu --precision f64 --format json
T $F bdiff /tmp/dg.csv "$M" --group c39 --reps 1000 --bsample --backend gpu --format json
T $F bdiff /tmp/dg.csv "$M" --group c39 --reps 1000 --backend auto --format json
for kind in wild pairs; do for b in gpu cpu; do
  T $F boot /tmp/dg.csv "$W" --cluster dest --kind $kind --reps 999 --backend $b --format json
done; done
if [ "$MODE" = full ]; then
  T $F bench --replicates 1000 --backend auto; cat /tmp/out.json
  $F demo --rows 10000000 --out /tmp/d10m.parquet >/dev/null
  $F demo --design difficult --rows 10000000 --out /tmp/h10m.parquet >/dev/null
  T $F fit /tmp/d10m.parquet "$M" --vcov cluster:dest --backend gpu --precision f64 --format json
  for b in gpu cpu; do
    T $F fit /tmp/d10m.parquet "$M" --vcov cluster:dest --backend $b --format json
    T $F fit /tmp/h10m.parquet "y ~ x1 + x2 | id_indiv + id_firm + id_year" --backend $b --format json
  done
fi
