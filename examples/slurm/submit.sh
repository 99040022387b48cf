#!/bin/bash
# Submit one sharded fegpu bdiff run to Slurm: a job array of K shards, then a merge job that
# starts when every shard has succeeded. Settings come from the environment (defaults below):
#
#   K=16 DATA=panel.parquet GROUP=soe REPS=10000 ./examples/slurm/submit.sh
#
# The merged output equals `fegpu bdiff DATA FORMULA --group GROUP --reps REPS --seed SEED`
# run on one machine (README.md, "Sharding").
set -euo pipefail

export K=${K:-8}
export DATA=${DATA:-panel.parquet}
export FORMULA=${FORMULA:-"qua ~ digtech + age + finance + profit | firm^dest + year"}
export GROUP=${GROUP:-soe}
export UNIT=${UNIT:-firm}
export REPS=${REPS:-10000}
export SEED=${SEED:-20230323}
# Pin the backend: every shard must fit the observed model the same way (merge checks it).
export BACKEND=${BACKEND:-cpu}
export OUTDIR=${OUTDIR:-bdiff_shards}
export FEGPU=${FEGPU:-fegpu}

here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$OUTDIR/logs"
array=$(sbatch --parsable --array=1-"$K" --output="$OUTDIR/logs/shard_%a.log" "$here/shard.sbatch")
sbatch --parsable --dependency=afterok:"${array%%;*}" --output="$OUTDIR/logs/merge.log" "$here/merge.sbatch"
echo "submitted shards as job $array (1-$K) and the merge after them; results in $OUTDIR/"
