#!/usr/bin/env bash
# Rebuild the default model, aescore-technical-lite0-exposure (docs/models.md, issue 28): the
# shipped aescore-technical-lite0 with the exposure branch, on 2 CPU cores: the branch's features
# about 20 minutes, its fit 15 seconds, the evaluations about 30 minutes.
#
#   scripts/build_exposure_model.sh PHOTOS_DIR WALLPAPERS_DIR COLOUR_DIR BRACKETS_DIR WORK_DIR [NAME]
#
# PHOTOS_DIR: the 1,000 ImageNet photographs this project was given (training; not redistributed);
#   the 132 of scripts/heldout-photos.txt are held out.
# WALLPAPERS_DIR: the extracted usr/share of the Debian wallpaper packages (validation only;
#   scripts/validation-photos.txt and scripts/exposure-photos.txt say which packages).
# COLOUR_DIR, BRACKETS_DIR: the strong-colour photos of scripts/colour-photos.txt and the exposure
#   brackets of scripts/bracket-frames.txt (validation only; both files say where each comes from).
# Needs: pip install -e '.[train,pretrained,faults,eval,export]' (imagecorruptions needs setuptools < 81).
#
# 1. scripts/train_tone_branch.py: 6,000 fault pairs through the frozen base model (features,
#    resumable: run again after a stop), then the branch fitted on them (seconds).
# 2. scripts/eval_exposure.py (base and new model side by side), scripts/eval_default_model.py and
#    scripts/eval_independent.py measure it.
# 3. scripts/publish_default_model.py copies it into weights/ with the measured card, exports its
#    ONNX program and makes it the default. (The star scale is calibrated after:
#    scripts/calibrate_stars.py --model NAME, then aescore/inference/stars.py.)
set -euo pipefail
photos=${1:?PHOTOS_DIR}; wall=${2:?WALLPAPERS_DIR}; colour=${3:?COLOUR_DIR}; brackets=${4:?BRACKETS_DIR}; work=${5:?WORK_DIR}
name=${6:-aescore-technical-lite0-exposure}
python=${PYTHON:-python}
export PYTHONPATH=${PYTHONPATH:-.}
base=weights/aescore-technical-lite0.safetensors

until [ -f "$work/model.safetensors" ]; do
    "$python" scripts/train_tone_branch.py --base "$base" --photos "$photos" --exclude scripts/heldout-photos.txt \
        --pairs 6000 --out "$work"
done
model="$work/model.safetensors"
"$python" scripts/eval_exposure.py --model "$base" --model "$model" --photos "$photos" --wallpapers "$wall" \
    --colour "$colour" --brackets "$brackets" --out "$work/eval-exposure.json" > "$work/eval-exposure.md"
"$python" scripts/eval_default_model.py --model "$model" --photos "$photos" --wallpapers "$wall" \
    --out "$work/eval.json" > "$work/eval.md"
"$python" scripts/eval_independent.py --model "$model" --photos "$photos" --train-ids "$work/train-photos.txt" \
    --limit 30 --seed 0 --corruptions gaussian_noise,shot_noise,impulse_noise,defocus_blur,motion_blur,zoom_blur,snow,brightness,contrast,pixelate,jpeg_compression \
    --out "$work/eval-independent.json" > "$work/eval-independent.md"
"$python" scripts/publish_default_model.py "$model" "$work/eval.json" "$work/eval-independent.json" "$name" \
    --exposure-json "$work/eval-exposure.json" \
    --train-command "$("$python" -c 'import json,sys; print(json.load(open(sys.argv[1]))["training"]["command"])' "${base%.safetensors}.json")"
