#!/usr/bin/env bash
# Rebuild the earlier default model (aescore-technical-r18, still shipped) from a folder of real photographs (the 1,000 photos this
# project was given are not redistributed). About 2 hours on 2 CPU cores. See docs/models.md.
#
#   scripts/build_technical_r18.sh PHOTOS_DIR WORK_DIR [NAME]
#
# Two stages, as the published weights were made:
#   1. MPA ResNet-18 from scratch with MP_ada on the degradation CSV. The published run was
#      stopped by hand (Ctrl-C) in epoch 5, at step 84 of 183, and its last.pt exported; this
#      script stops it at the first step boundary after epoch 4 instead, so a rebuild is close to,
#      not bit-identical with, the published weights.
#   2. Its backbone initialises a pair_rank run (a photo ranked above its own degraded copy) of 12
#      epochs at the same 256-px scale; its final epoch is exported.
#   3. That backbone initialises a second pair_rank run at the photos' own scale (shorter edge
#      375 px, where noise, JPEG blocking and resampling softness stay visible) on a dataset with
#      10 degraded copies per photo; its final epoch is published (validation accuracy on these
#      imbalanced splits is a poor guide, so the best-accuracy export is not used).
set -euo pipefail
photos=${1:?PHOTOS_DIR}; work=${2:?WORK_DIR}; name=${3:-aescore-technical-r18}
aescore=${AESCORE:-aescore}
python=${PYTHON:-python}

common=(--dataset csv --root "$work/degraded/train.csv" --preset mpa-ada --optimizer adam
        --weight-decay 1e-4 --schedule poly --epochs 12 --batch-size 16 --patches 4 --crop-size 96
        --resize-size 256 --workers 1 --seed 0)
degrade=("$aescore" data degrade "$photos" "$work/degraded" --holdout 0.1 --seed 0 --copies 3)
degrade10=("$aescore" data degrade "$photos" "$work/degraded10" --holdout 0.1 --seed 0 --copies 10)
stage1=("$aescore" train "${common[@]}" --no-pretrained --lr 1e-3 --output "$work/stage1")
stage2=("$aescore" train "${common[@]}" --objective pair_rank --backbone-weights "$work/stage1.safetensors"
        --lr 5e-4 --output "$work/stage2")
stage3=("$aescore" train --dataset csv --root "$work/degraded10/train.csv" --preset mpa-ada --optimizer adam
        --weight-decay 1e-4 --schedule poly --epochs 28 --batch-size 16 --patches 4 --crop-size 96
        --resize-size 375 --workers 1 --seed 0 --val-size 300 --objective pair_rank
        --backbone-weights "$work/stage2.safetensors" --lr 5e-4 --output "$work/stage3")
pairwise=("$aescore" data pairwise "$work/degraded10" --model "$work/final.safetensors" --json)

"${degrade[@]}"

"${stage1[@]}" &
pid=$!
until grep -q '"epoch": 4,' "$work/stage1/metrics.jsonl" 2>/dev/null || ! kill -0 "$pid" 2>/dev/null; do sleep 5; done
kill -INT "$pid" 2>/dev/null || true
wait "$pid" || true
"$python" scripts/export_checkpoint.py "$work/stage1" "$work/stage1.safetensors"

"${stage2[@]}"
"$python" scripts/export_checkpoint.py "$work/stage2" "$work/stage2.safetensors"

"${degrade10[@]}"
"${stage3[@]}"
"$python" scripts/export_checkpoint.py "$work/stage3" "$work/final.safetensors"
"${pairwise[@]}" > "$work/pairwise.json"
"$python" scripts/publish_technical_r18.py "$work/stage3" "$work/pairwise.json" "$work/degraded10" "$name" \
    --weights "$work/final.safetensors" \
    --degrade-command "$(printf '%q ' "${degrade[@]}"); $(printf '%q ' "${degrade10[@]}")" \
    --train-command "$(printf '%q ' "${stage1[@]}") (stopped in epoch 5, last.pt exported); then $(printf '%q ' "${stage2[@]}"); then $(printf '%q ' "${stage3[@]}")" \
    --pairwise-command "$(printf '%q ' "${pairwise[@]}")"
