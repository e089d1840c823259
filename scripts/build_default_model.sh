#!/usr/bin/env bash
# Rebuild the bundled default model from a folder of real photographs (the 1,000 photos this
# project was given live in ../shared/photos; they are not redistributed). Takes about an hour on
# 2 CPU cores. Every step is seeded; see docs/models.md for what was measured.
#
#   scripts/build_default_model.sh PHOTOS_DIR WORK_DIR [NAME]
set -euo pipefail
photos=${1:?PHOTOS_DIR}; work=${2:?WORK_DIR}; name=${3:-aescore-technical-r18}
aescore=${AESCORE:-aescore}

degrade=("$aescore" data degrade "$photos" "$work/degraded" --holdout 0.1 --seed 0 --copies 3)
train=("$aescore" train --dataset csv --root "$work/degraded/train.csv" --preset mpa-ada --no-pretrained
       --optimizer adam --lr 1e-3 --weight-decay 1e-4 --schedule poly --epochs 12 --batch-size 16
       --patches 4 --crop-size 96 --resize-size 256 --workers 1 --seed 0 --output "$work/run")

"${degrade[@]}"
"${train[@]}"
# Accuracy on a 3:1 imbalanced validation split is a poor guide here; the final epoch is published.
python scripts/export_checkpoint.py "$work/run" "$work/final.safetensors"
pairwise=("$aescore" data pairwise "$work/degraded" --model "$work/final.safetensors" --json)
"${pairwise[@]}" > "$work/pairwise.json"
python scripts/publish_default_model.py "$work/run" "$work/pairwise.json" "$work/degraded" "$name" \
    --weights "$work/final.safetensors" \
    --degrade-command "$(printf '%q ' "${degrade[@]}")" \
    --train-command "$(printf '%q ' "${train[@]}")" \
    --pairwise-command "$(printf '%q ' "${pairwise[@]}")"
