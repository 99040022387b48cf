#!/usr/bin/env bash
# End to end at 10M rows (issue 13): the whole command a user runs, fegpu beside R fixest
# (data.table::fread + feols), on the same files, in one run, on this machine.
#
#   scripts/peers/bench_10m.sh [FEGPU_BINARY] [OLD_FEGPU_BINARY]
#
# Writes the 10M-row demo panel as CSV and Parquet and the 130k demo as CSV under $DIR
# (default /tmp/fegpu-10m; reused when present), reads each file once so that every command
# finds it in the page cache, then times: fegpu fit on the CSV, on the Parquet file and on the
# 130k CSV (each with FEGPU_TIMING=1, stage lines kept), optionally the same with an older
# binary, and Rscript fread + feols (2 threads) on the same CSV. Wall time and peak memory by
# /usr/bin/time. Needs R with data.table and fixest (see the developers' brief) for the peer.
set -euo pipefail
BIN=${1:-${CARGO_TARGET_DIR:-target}/release/fegpu}
OLD=${2:-}
DIR=${DIR:-/tmp/fegpu-10m}
mkdir -p "$DIR"
F="qua ~ digtech + age + finance + profit + klratio + turnover + lnlp + lev + open + market + lnpergdp + xr | firm + year + firm^dest"
[ -f "$DIR/d10m.csv" ] || "$BIN" demo --rows 10000000 --out "$DIR/d10m.csv"
[ -f "$DIR/d10m.parquet" ] || "$BIN" demo --rows 10000000 --out "$DIR/d10m.parquet"
[ -f "$DIR/d130k.csv" ] || "$BIN" demo --out "$DIR/d130k.csv"
cat "$DIR"/d10m.csv "$DIR"/d10m.parquet "$DIR"/d130k.csv > /dev/null

run() { # label, command...
  local label=$1; shift
  local log="$DIR/$(echo "$label" | tr ' /' '__').log"
  /usr/bin/time -f "%e %M" -o "$DIR/time.txt" "$@" > "$DIR/out.txt" 2> "$log" || { echo "$label: FAILED"; tail -5 "$log"; return; }
  read -r wall peak < "$DIR/time.txt"
  printf '%-34s %8.2f s %8.0f MB   %s\n' "$label" "$wall" "$((peak / 1024))" \
    "$(grep -E '^timing: total' "$log" | sed 's/timing: total *//' || true)"
}

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; $(date -u +%F)"
for b in "$BIN" $OLD; do
  tag=$([ "$b" = "$BIN" ] && echo fegpu || echo "fegpu (old)")
  run "$tag fit 10M CSV" env FEGPU_TIMING=1 "$b" fit "$DIR/d10m.csv" "$F" --vcov cluster:dest --backend cpu
  run "$tag fit 10M Parquet" env FEGPU_TIMING=1 "$b" fit "$DIR/d10m.parquet" "$F" --vcov cluster:dest --backend cpu
  run "$tag fit 130k CSV" env FEGPU_TIMING=1 "$b" fit "$DIR/d130k.csv" "$F" --vcov cluster:dest --backend cpu
done
if command -v Rscript > /dev/null; then
  cat > "$DIR/fixest.R" <<EOF
suppressPackageStartupMessages({library(data.table); library(fixest)})
setDTthreads(2)
t0 = Sys.time(); d = fread("$DIR/d10m.csv"); t1 = Sys.time()
m = feols($F, d, cluster = ~dest, nthreads = 2)
t2 = Sys.time()
cat(sprintf("fread %.2f s, feols %.2f s; digtech %.10g (se %.6g)\n", as.numeric(t1 - t0, units = "secs"),
    as.numeric(t2 - t1, units = "secs"), coef(m)[["digtech"]], se(m)[["digtech"]]), file = stderr())
EOF
  run "R fixest fread+feols 10M CSV" Rscript "$DIR/fixest.R"
  grep fread "$DIR/R_fixest_fread+feols_10M_CSV.log" || true
fi
