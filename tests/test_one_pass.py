"""One pass computes everything (issue 25): a plain ``rank`` caches every output of its forward
pass and the checks computed from them, so ``rank --reasons``, the contact sheet's model checks and
``learn``'s embeddings after it decode nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from aescore import cull
from tests.helpers import pattern




def _folder(root: Path, n: int = 4) -> Path:
    root.mkdir(parents=True)
    for i in range(n):
        Image.fromarray(pattern(300 + 20 * i, 240, i)).save(root / f"img{i}.jpg", quality=92)
    return root


class _Decodes:
    """Counts calls of :func:`aescore.data.images.decode_rgb` (the scorer's only decode)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import aescore.data.images as images

        self.n = 0
        real = images.decode_rgb

        def counting(*args: Any, **kwargs: Any) -> Any:
            self.n += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(images, "decode_rgb", counting)


def _settings(model: Path | None, cache: Path, runtime: str = "auto", use_cache: bool = True) -> cull.Settings:
    return cull.Settings(model=str(model) if model else None, device="cpu", workers=0, runtime=runtime,  # type: ignore[arg-type]
                         cache_path=str(cache), use_cache=use_cache)


def _by_path(run: cull.ScoreRun) -> dict[str, Any]:
    return {p.path: p for p in run.photos}


def _assert_fields_close(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert set(a) == set(b)
    for name, value in a.items():
        other = b[name]
        if isinstance(value, dict):
            _assert_fields_close(value, other)
        elif isinstance(value, (list, tuple)):
            np.testing.assert_allclose(np.asarray(value, dtype=float), np.asarray(other, dtype=float), atol=1e-6)
        elif isinstance(value, float):
            assert value == pytest.approx(other, abs=1e-6)
        else:
            assert value == other


@pytest.mark.parametrize("runtime", ["torch", "onnx"])
def test_rank_then_rank_reasons_decodes_nothing(
    tiny_faultnet: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, runtime: str, shipped_models_only: None
) -> None:
    """``torch``: the tiny faultnet; ``onnx``: the default model's ONNX program (same reasons head)."""
    model = tiny_faultnet if runtime == "torch" else None
    lib = _folder(tmp_path / "lib")
    cache = tmp_path / "c.sqlite"
    first = cull.score_photos([lib], _settings(model, cache, runtime))
    assert first.computed == 4 and first.from_cache == 0
    assert all("faults" not in p.fields for p in first.photos)  # a plain rank's fields are unchanged

    decodes = _Decodes(monkeypatch)
    again = cull.score_photos([lib], _settings(model, cache, runtime), ["reasons"])
    assert decodes.n == 0
    assert again.computed == 0 and again.from_cache == 4

    fresh = cull.score_photos([lib], _settings(model, tmp_path / "unused.sqlite", runtime, use_cache=False), ["reasons"])
    assert decodes.n == 4  # the fresh run did decode (the counter works)
    got, want = _by_path(again), _by_path(fresh)
    assert set(got) == set(want)
    for path, photo in want.items():
        _assert_fields_close(got[path].fields, photo.fields)


def test_contact_sheet_model_checks_and_embeddings_come_from_the_first_pass(
    tiny_faultnet: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under PyTorch the region map comes from the same pass; the embedding always does."""
    lib = _folder(tmp_path / "lib")
    cache = tmp_path / "c.sqlite"
    cull.score_photos([lib], _settings(tiny_faultnet, cache, "torch"))

    decodes = _Decodes(monkeypatch)
    run = cull.score_photos([lib], _settings(tiny_faultnet, cache, "torch"), ["reasons", "regions"], with_embeddings=True)
    assert decodes.n == 0 and run.computed == 0
    fresh = cull.score_photos(
        [lib], _settings(tiny_faultnet, cache, "torch", use_cache=False), ["reasons", "regions"], with_embeddings=True
    )
    got, want = _by_path(run), _by_path(fresh)
    for path, photo in want.items():
        assert got[path].fields["region_map"] is not None
        _assert_fields_close(got[path].fields, photo.fields)
        assert got[path].embedding is not None
        np.testing.assert_allclose(got[path].embedding, photo.embedding, atol=1e-6)


def test_onnx_first_pass_caches_the_region_map_its_program_gives(tiny_faultnet: Path, tmp_path: Path, shipped_models_only: None) -> None:
    """The default model's program gives the region map (issue 26): the first pass under ONNX
    Runtime caches it. Where the pass cannot give one (a program exported before, TTA), none is
    cached (never a None standing in for it)."""
    import json
    import shutil

    from aescore.checks import get_check
    from aescore.cull.pipeline import pass_outputs
    from aescore.inference.cache import CacheKey, ScoreCache
    from aescore.inference.onnx_runtime import Runtime
    from aescore.inference.loading import find_model
    from aescore.weights.card import read_card

    card = read_card(tiny_faultnet)
    assert "region_map" not in pass_outputs(card, Runtime.torch, 5)
    assert {"p_high", "embedding", "faults", "region_map"} <= pass_outputs(card, Runtime.torch, None)
    ref = find_model(None)
    assert {"p_high", "embedding", "faults", "region_map"} <= pass_outputs(ref.card, Runtime.onnx, None)

    # The same program, its card saying what a program exported before issue 26 gave.
    old = tmp_path / "old" / ref.path.with_suffix(".safetensors").name
    old.parent.mkdir()
    for suffix in (".safetensors", ".onnx"):
        shutil.copy(ref.path.with_suffix(suffix), old.with_suffix(suffix))
    old_card = {**ref.card, "onnx": {**ref.card["onnx"], "outputs": ["logits", "embedding", "faults"]}}
    old.with_suffix(".json").write_text(json.dumps(old_card), encoding="utf-8")
    assert "region_map" not in pass_outputs(old_card, Runtime.onnx, None)

    model_key = f"{ref.card['sha256']}:{_recipe_name(ref.card)}"
    for model, cached in ((None, True), (str(old), False)):
        lib = _folder(tmp_path / f"lib-{cached}", n=1)
        cache_path = tmp_path / f"c-{cached}.sqlite"
        first = cull.score_photos([lib], _settings(model, cache_path, "onnx"))
        with ScoreCache(cache_path) as cache:
            photo = Path(first.photos[0].path).resolve()
            st = photo.stat()
            key = CacheKey(str(photo), st.st_size, st.st_mtime_ns)
            assert cache.get_checks([key], get_check("reasons").cache_key(model_key))
            regions = cache.get_checks([key], get_check("regions").cache_key(model_key))
            if cached:
                assert regions[str(photo)]["region_map"]  # rows of logits, not None
            else:
                assert not regions


def _recipe_name(card: dict[str, Any]) -> str:
    from aescore.data.transforms import Preprocess

    return Preprocess.from_card(card["preprocess"]).recipe(None)
