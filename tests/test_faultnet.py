"""The default model's network (issue 12): detail recipe, view pooling, the core's detail path,
the reasons check and ``--reasons``."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from aescore import cull
from aescore.data.transforms import DetailViews, Preprocess, RecipeError, detail_boxes
from aescore.cull import output
from aescore.models.heads import pool_faults, pool_quality
from aescore.data.fault_kinds import FAULT_KINDS
from tests.helpers import outputs, pattern, randomise_batchnorm


def _recipe(**detail: Any) -> dict[str, Any]:
    return {"mean": [0.5] * 3, "std": [0.5] * 3,
            "eval": {"mode": "shorter", "size": 64, "max_aspect": 1.5, "detail": {"crops": 2, "size": 48, **detail}}}




def _folder(root: Path, n: int = 3) -> list[Path]:
    root.mkdir(parents=True)
    paths = []
    for i in range(n):
        p = root / f"img{i}.jpg"
        Image.fromarray(pattern(300 + 20 * i, 240, i)).save(p, quality=92)
        paths.append(p)
    return paths


def test_pool_quality_averages_the_whole_frame_and_the_mean_crop() -> None:
    whole = torch.tensor([[0.0, 2.0], [1.0, 0.0]])  # d = 2, -1
    crops = torch.tensor([[[0.0, 1.0], [0.0, -3.0]], [[0.5, 0.5], [0.0, 1.0]]])  # mean d = -1, 0.5
    pooled = pool_quality(whole, crops)
    assert torch.allclose(pooled[:, 1] - pooled[:, 0], torch.tensor([0.5, -0.25]))
    assert torch.allclose(torch.softmax(pooled, 1)[:, 1], torch.sigmoid(torch.tensor([0.5, -0.25])))


def test_pool_faults_takes_the_larger_of_frame_and_crop_mean() -> None:
    whole = torch.tensor([[2.0, -1.0, 0.0]])
    crops = torch.tensor([[[0.0, 3.0, -2.0], [1.0, 1.0, 0.0]]])  # mean 0.5, 2, -1
    assert pool_faults(whole, crops).tolist() == [[2.0, 2.0, 0.0]]


def test_detail_boxes_pick_the_structured_region_and_are_deterministic() -> None:
    rng = np.random.default_rng(0)
    a = np.full((300, 400, 3), 128, np.uint8)
    a[100:200, 300:400] = (rng.random((100, 100, 1)) > 0.5) * 255  # texture in one tile of the 4 x 3 grid
    img = Image.fromarray(a)
    boxes = detail_boxes(img, 2, 100)
    assert boxes[0] == (300, 100, 400, 200) and boxes == detail_boxes(img, 2, 100)
    assert len(set(boxes)) == 2
    # Fewer tiles than crops: the best repeats; every box lies inside the image.
    small = detail_boxes(Image.fromarray(a[:120, :130]), 3, 100)
    assert len(small) == 3 and all(0 <= l < r <= 130 and 0 <= t < b <= 120 for l, t, r, b in small)


def test_detail_recipe_is_parsed_and_validated() -> None:
    p = Preprocess.from_card(_recipe(decode_shorter=900))
    assert p.detail is not None and (p.detail.crops, p.detail.size, p.detail.decode_shorter) == (2, 48, 900)
    assert p.decode_size() == 900 and p.decode_size(4) == 64  # multi-crop TTA needs no detail
    views = p.tensor(Image.fromarray(pattern(90, 70, 0)), None, "k")  # smaller than a crop: enlarged
    assert isinstance(views, DetailViews) and tuple(views.crops.shape) == (2, 3, 48, 48)
    assert views.shape[0] == tuple(views.whole.shape) and views.whole.shape[1] == 64
    for bad in ({"crops": 0}, {"size": -1}, {"decode_shorter": "big"}):
        with pytest.raises(RecipeError, match="preprocess.eval.detail"):
            Preprocess.from_card(_recipe(**bad))


def test_core_scores_equal_the_pooled_views(tiny_faultnet: Path, tmp_path: Path) -> None:
    from aescore.data.images import load_rgb
    from aescore.inference.core import Job, infer
    from aescore.inference.loading import open_model

    paths = _folder(tmp_path / "lib")
    model = open_model(tiny_faultnet, "cpu", "torch")
    outs = list(infer(model, [Job(str(p)) for p in paths], want=frozenset({"p_high", "faults", "embedding"}), workers=0))
    for p, out in zip(paths, outs):
        img = load_rgb(p, min_shorter=model.preprocess.decode_size())
        v = model.preprocess.detail_views(img)
        with torch.no_grad():  # each view alone through the same network, pooled by hand
            whole = model.module.head(outputs(model.module, v.whole[None], "embedding").embedding)
            crops = model.module.head(outputs(model.module, v.crops, "embedding").embedding)
            d = 0.5 * ((whole[0, 1] - whole[0, 0]) + (crops[:, 1] - crops[:, 0]).mean())
        assert out.outputs["p_high"] == pytest.approx(float(torch.sigmoid(d)), abs=1e-5)
        assert out.outputs["faults"].shape == (len(FAULT_KINDS),) and out.outputs["embedding"].ndim == 1


def test_reasons_check_reaches_every_format_and_the_cache(tiny_faultnet: Path, tmp_path: Path) -> None:
    _folder(tmp_path / "lib")
    settings = cull.Settings(model=str(tiny_faultnet), device="cpu", workers=0, cache_path=str(tmp_path / "c.sqlite"))
    run = cull.score_photos([tmp_path / "lib"], settings, ["reasons"])
    cull.assign_ranks(run.photos)
    rows = [json.loads(line) for line in output.format_jsonl(run.photos, run.checks).splitlines()]
    for row in rows:
        assert list(row["faults"]) == list(FAULT_KINDS) and all(0 <= v <= 1 for v in row["faults"].values())
        best = max(row["faults"], key=row["faults"].get)
        assert row["top_fault"] == (best if row["faults"][best] >= 0.5 else "none")
    table = list(csv.reader(io.StringIO(output.format_csv(run.photos, run.checks), newline="")))
    assert table[0] == ["rank", "score", "label", "top_fault", "faults", "path"]
    assert json.loads(table[1][4]) == rows[0]["faults"]
    again = cull.score_photos([tmp_path / "lib"], settings, ["reasons"])
    assert again.computed == 0 and [p.fields for p in again.photos] == [p.fields for p in run.photos]


def test_reasons_refused_for_a_model_without_a_reasons_head(tiny_weights: Path, tmp_path: Path, capsys: Any) -> None:
    from aescore.cli.main import main

    _folder(tmp_path / "lib", 1)
    with pytest.raises(SystemExit) as exit_info:
        main(["score", str(tmp_path / "lib"), "--model", str(tiny_weights), "--reasons", "--workers", "0"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("aescore: error: --reasons needs a model with a reasons head; tiny")


def test_personal_model_on_a_faultnet_base_scores_and_keeps_the_reasons(tiny_faultnet: Path, tmp_path: Path) -> None:
    from aescore.inference.core import Job, infer
    from aescore.inference.loading import open_model
    from aescore.models import create_model
    from aescore.weights import has_reasons_head, load_weights, save_weights

    base, card = load_weights(tiny_faultnet, plain=False)
    personal = create_model("personal_ranker", base_architecture="faultnet", base_args=card["arch_args"], embed_dim=base.num_features)
    personal.base.load_state_dict(base.state_dict())
    rng = np.random.default_rng(0)
    personal.set_head(rng.normal(size=base.num_features), np.ones(base.num_features), rng.normal(size=base.num_features), 0.5, 0.0, 1.0)
    path = tmp_path / "mine.safetensors"
    saved = save_weights(personal.eval(), path, {"name": "mine", "preprocess": card["preprocess"], "training": {"dataset": "none"}})
    assert has_reasons_head(saved) and has_reasons_head(card)

    photos = _folder(tmp_path / "lib", 2)
    jobs = [Job(str(p)) for p in photos]
    want = frozenset({"p_high", "faults", "embedding"})
    mine = list(infer(open_model(path, "cpu", "torch"), jobs, want=want, workers=0))
    generic = list(infer(open_model(tiny_faultnet, "cpu", "torch"), jobs, want=want, workers=0))
    head = personal.eval()
    for m, g in zip(mine, generic):
        np.testing.assert_allclose(m.outputs["faults"], g.outputs["faults"], atol=1e-5)  # the base's reasons
        log_odds = torch.logit(torch.tensor(g.outputs["p_high"], dtype=torch.float64)).float()
        with torch.no_grad():
            expected = head._head(torch.stack([torch.zeros(()), log_odds])[None],
                                  torch.as_tensor(g.outputs["embedding"])[None], None)
        assert m.outputs["p_high"] == pytest.approx(float(torch.softmax(expected, 1)[0, 1]), abs=1e-4)


def test_contact_sheet_of_a_reasons_model_carries_the_faults(tiny_faultnet: Path, tmp_path: Path) -> None:
    import re

    from aescore.cli.main import main

    _folder(tmp_path / "lib", 2)
    page = tmp_path / "page.html"
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(tmp_path / "lib"), "-o", str(page), "--model", str(tiny_faultnet), "--workers", "0"])
    assert exit_info.value.code == 0
    data = json.loads(re.search(r'id="report-data">(.*?)</script>', page.read_text(), re.S).group(1))
    for p in data["photos"]:
        assert set(p["faults"]) == set(FAULT_KINDS)
        best = max(p["faults"], key=p["faults"].get)
        # The reasons check declares top_fault a badge and a filter; the page shows "none" as nothing.
        assert p["f"]["top_fault"] == (best if p["faults"][best] >= 0.5 else "none")
    assert {"name": "top_fault", "filter": "reason", "badge": True} in data["fields"]


def test_content_tail_is_the_embedding_of_the_imagenet_network_layout() -> None:
    """With ``content_from=3`` the embedding is the output of the network made of the shared stem
    and first three stages plus the content tail's stages (checked against timm's own Lite0
    holding exactly those tensors), the heads still read the fine-tuned stages, and training
    mode leaves the tail frozen with its BatchNorm statistics."""
    import timm

    from aescore.models import create_model

    torch.manual_seed(0)
    model = create_model("faultnet", backbone="tf_efficientnet_lite0", content_from=3).eval()
    randomise_batchnorm(model)  # the tail and the backbone's later stages now differ
    state = model.state_dict()
    imagenet_layout = {}
    for key, value in state.items():
        if key.startswith(("backbone.conv_stem.", "backbone.bn1.")) or any(key.startswith(f"backbone.blocks.{i}.") for i in range(3)):
            imagenet_layout[key.removeprefix("backbone.")] = value
        elif key.startswith("content.blocks."):
            stage, rest = key.removeprefix("content.blocks.").split(".", 1)
            imagenet_layout[f"blocks.{int(stage) + 3}.{rest}"] = value
        elif key.startswith(("content.conv_head.", "content.bn2.")):
            imagenet_layout[key.removeprefix("content.")] = value
    ref = timm.create_model("tf_efficientnet_lite0", num_classes=0)
    ref.load_state_dict(imagenet_layout, strict=True)
    ref.eval()
    x, crops = torch.randn(2, 3, 96, 130), torch.randn(2, 2, 3, 48, 48)
    with torch.no_grad():
        views = outputs(model, x, "embedding", "faults", "region_map", crops=crops)
        torch.testing.assert_close(views.embedding, ref(x), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(outputs(model, x, "embedding").embedding, ref(x), atol=1e-5, rtol=1e-5)
        fine_tuned = model.backbone(x)
        assert (fine_tuned - views.embedding).abs().max() > 0.1
        torch.testing.assert_close(model(x), model.head(fine_tuned), atol=1e-5, rtol=1e-5)
        whole = outputs(model, x, "embedding", "region_map")
        logits, emb, region_map = whole.logits, whole.embedding, whole.region_map
        torch.testing.assert_close(region_map.mean((1, 2)), logits[:, 1] - logits[:, 0], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(emb, ref(x), atol=1e-5, rtol=1e-5)
    model.train()
    assert model.content is not None and not model.content.training and model.backbone.training
    assert not any(p.requires_grad for p in model.content.parameters())
    with pytest.raises(ValueError, match="EfficientNet"):
        create_model("faultnet", backbone="resnet10t", content_from=2)
