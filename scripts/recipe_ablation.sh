#!/usr/bin/env bash
# Recipe ablation at a fixed CPU budget: each variant trains for $MINUTES minutes (1 torch thread,
# two variants at a time on a 2-core machine) from scratch, then `colorgan eval` scores it on val/.
#
#   DATA=/path/to/train-folder PHOTOS=../shared/photos MINUTES=9 bash scripts/recipe_ablation.sh base cosine ...
#
# Each variant is the base recipe plus the flags listed below; results land in $RUNS/<variant>/.
set -euo pipefail
DATA=${DATA:?set DATA to the training image folder}
PHOTOS=${PHOTOS:-../shared/photos}
MINUTES=${MINUTES:-9}
RUNS=${RUNS:-runs/ablation}
BASE=(--dataset "$DATA" --val-dataset "$PHOTOS" --val-split val --val-count 8 --resolution 128 --batch-size 8
      --num-workers 1 --max-steps 100000 --max-minutes "$MINUTES" --pretrain-steps 180 --hint-prob 0.5
      --checkpoint-every 100000 --val-every 100000 --seed 0)
declare -A VARIANT=(
  [base]=""
  [cosine]="--lr-schedule cosine --learning-rate 5e-4"
  [lsgan]="--gan-loss lsgan"
  [hinge]="--gan-loss hinge"
  [spectral]="--disc-norm spectral"
  [lambda30]="--lambda-l1 30"
  [res160]="--resolution 160"
  [res96]="--resolution 96"
  [ema099]="--ema-decay 0.99"
  [regnetx004]="--encoder regnetx_004"
  [wide]="--decoder-channels 384 192 96 48 24"
  [hints09]="--hint-prob 0.9"
  [l1only]="--pretrain-steps 100000"
)
run_one() {
  local name=$1 out=$RUNS/$1
  [[ -f $out/eval.json ]] && return 0
  rm -rf "$out"
  # shellcheck disable=SC2086
  OMP_NUM_THREADS=1 python train_accelerate.py "${BASE[@]}" ${VARIANT[$name]} --output-dir "$out" > "$out.log" 2>&1
  OMP_NUM_THREADS=1 colorgan eval --data "$PHOTOS/val" --model "$out" --device cpu \
    --out "$out/eval.md" --summary-json "$out/eval.json" >> "$out.log" 2>&1
}
mkdir -p "$RUNS"
pids=()
for name in "$@"; do
  [[ -n ${VARIANT[$name]+x} ]] || { echo "unknown variant $name" >&2; exit 2; }
  run_one "$name" & pids+=($!)
  if (( ${#pids[@]} == 2 )); then wait "${pids[@]}"; pids=(); fi
done
wait
