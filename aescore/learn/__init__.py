"""Learn one photographer's taste from the ratings they already have (``aescore learn``).

Workflow: :func:`aescore.ratings.collect_ratings` reads the ratings (sidecars, embedded XMP,
catalogs, CSV); :func:`aescore.learn.features.embed_photos` gets the base model's embedding,
generic score and (a base with a reasons head) fault probabilities of every rated photo (through
the score cache); :mod:`aescore.learn.evaluate` compares a pairwise ranking head with the generic
model on held-out shoots; the head fitted on all ratings is saved as a normal model (architecture
``personal_ranker``) under :func:`aescore.weights.user_models_dir`, usable as
``aescore rank --model NAME``: a **head-only** file (:func:`aescore.weights.save_head`, a few kB,
written with NumPy) whose card names its base model by name and sha256, or with ``--fine-tune``
the whole fine-tuned network. Without ``--fine-tune`` nothing here imports torch: the base runs
under ONNX Runtime, the head is NumPy.

The held-out figures are computed from what ``score`` computes: each held-out photo's P(high)
(:attr:`LearnResult.held_out_scores`) is the score ``score --model`` gives it with the personal
model that held it out — the head of its fold on the base model's outputs from the inference core
(through the score cache); with ``--fine-tune``, the fine-tuned network itself, run by the
inference core (:func:`core_scores`) on the held-out photos' files.

Example::

    from aescore.learn import learn, make_default
    result = learn(["~/Pictures/2024"], "my-taste")
    print(result.held_out.personal_accuracy, result.held_out.beats_generic)
    if result.held_out.beats_generic:
        make_default(result)

Heavy libraries are imported inside the functions (the CLI imports this module at start-up).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from aescore.errors import AescoreError, DataError, UsageError, WeightsError

__all__ = ["LearnResult", "NotEnoughRatings", "check_replace", "learn", "make_default", "MIN_RATED", "validate_name"]

#: Fewest rated photos (with at least two distinct ratings) learn accepts.
MIN_RATED = 50
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class NotEnoughRatings(AescoreError):
    """Too few usable ratings to learn from (exit status 1).

    ``problem``: what is wrong. ``setting``: the setting that would change the outcome (the
    learn argument ``min_rated`` when there were fewer rated photos than it asks for), or None;
    the message names the setting, never a CLI flag: a command names its own flag for it.
    """

    def __init__(self, problem: str, setting: str | None = None) -> None:
        super().__init__(problem if setting is None else f"{problem} ({setting} changes this)")
        self.problem = problem
        self.setting = setting


@dataclass
class LearnResult:
    """What :func:`learn` did: the ratings report, photos skipped as unreadable, the held-out
    comparison (:class:`aescore.learn.evaluate.HeldOut`), and the saved model (``path``, ``card``)."""

    ratings: Any  # aescore.ratings.RatingsReport
    skipped: list[tuple[str, str]]
    held_out: Any  # aescore.learn.evaluate.HeldOut
    path: Path
    card: dict[str, Any]
    photos: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    baseline: Any = None  # with fine-tuning: the embedding head's cross-validated HeldOut
    replaced_default: bool = False  # it replaced the configured default model of its name (replace=True)
    held_out_scores: Any = None  # aescore.learn.evaluate.HeldOutScores: what `held_out` was computed from

    @property
    def name(self) -> str:
        """The personal model's name (``--model NAME``)."""
        return self.path.stem


def validate_name(name: str) -> None:
    """A personal model name: letters, digits, ``.``, ``_``, ``-`` (a file stem); UsageError otherwise,
    also when the name is taken by a model that is not a personal model in the user folder."""
    from aescore.weights import list_available, user_models_dir

    if not _NAME_RE.match(name) or name.endswith((".json", ".safetensors")):
        raise UsageError(f"model name {name!r}: use letters, digits, '.', '_' and '-' (at most 64, no path)")
    mine = user_models_dir().resolve()
    for card_path, _card in list_available():
        if card_path.stem == name and card_path.parent.resolve() != mine:
            raise UsageError(f"model name {name!r} is taken by {card_path}; choose another name")


def _is_configured_default(card_path: Path) -> bool:
    """Whether the user chose the model of ``card_path`` as the default (``models --set-default``,
    ``learn --set-default``); False when no default is configured or it cannot be resolved."""
    from aescore.weights import configured_default, default_weights_path

    try:
        if configured_default() is None:
            return False
        return default_weights_path().with_suffix(".json").resolve() == card_path.resolve()
    except (WeightsError, OSError):
        return False


def check_replace(name: str, replace: bool) -> bool:
    """Whether learning ``name`` replaces the configured default model. UsageError when a personal
    model of that name exists and ``replace`` is False: none is ever overwritten silently."""
    from aescore.termtext import display_path
    from aescore.weights import user_models_dir

    card_path = user_models_dir() / f"{name}.json"
    if not any(os.path.lexists(card_path.with_suffix(ext)) for ext in (".json", ".safetensors")):
        return False
    is_default = _is_configured_default(card_path)
    if not replace:
        raise UsageError(
            f"personal model {name!r} already exists ({display_path(str(card_path))})"
            + (" and is the default model" if is_default else "")
            + "; choose another name, or replace it (--replace)"
        )
    return is_default


def _check_enough(ratings: Sequence[int], minimum: int, where: str) -> None:
    distinct = sorted(set(ratings))
    if len(ratings) < minimum or len(distinct) < 2:
        got = f"{len(ratings)} rated photo(s)" + (f", all rated {distinct[0]}" if len(distinct) == 1 else "")
        raise NotEnoughRatings(
            f"not enough ratings to learn from {where}: {got}; need at least {minimum} with at least two different ratings",
            setting="min_rated" if len(ratings) < minimum else None,
        )


def learn(
    paths: Sequence[str | os.PathLike[str]],
    name: str,
    *,
    model: str | os.PathLike[str] | None = None,
    ratings_csv: str | os.PathLike[str] | None = None,
    catalog: str | os.PathLike[str] | None = None,
    digikam_db: str | os.PathLike[str] | None = None,
    read_xmp: bool = True,
    include_aescore: bool = False,
    use_generic: bool = True,
    use_faults: bool = True,
    use_cache: bool = True,
    device: str = "auto",
    folds: int = 5,
    min_rated: int = MIN_RATED,
    seed: int = 0,
    fine_tune: bool = False,
    fine_tune_config: Any = None,
    replace: bool = False,
    progress: Callable[[int, int], Callable[[int], None] | None] | None = None,
    on_skip: Callable[[str, str], None] | None = None,
    on_ratings: Callable[[Any], None] | None = None,
    warn: Callable[[str], None] | None = None,
) -> LearnResult:
    """Learn a personal model named ``name`` from the ratings of the photos under ``paths``.

    ``paths``: photos and folders (searched like ``aescore rank``); may be empty when a catalog,
    database or CSV names the photos. ``model``: the base model (None = the default). Ratings
    sources and precedence: :mod:`aescore.ratings`. ``use_generic``: give the head the base
    model's generic score as an input; ``use_faults``: its fault probabilities too (a base with a
    reasons head). ``folds``: held-out folds (whole shoots each).
    ``on_ratings(report)`` is called once the ratings are read (before the slow part).
    ``fine_tune``: also train the backbone (:mod:`aescore.learn.finetune`; meant for a GPU) on
    the training shoots of one split; the held-out figures are then those of the fine-tuned model
    on the other shoots, and the embedding head's cross-validated figures stay in ``baseline``.

    Unrated photos are decoded once (cheaply) so that files which are not readable photos are
    reported as skipped (``on_skip``, :attr:`LearnResult.skipped`) rather than counted as unrated.

    Raises :class:`NotEnoughRatings` below ``min_rated`` usable rated photos (its ``setting`` is
    then ``"min_rated"``) or with a single distinct rating; UsageError for a bad name. Always saves the model (see :func:`make_default`
    for the gate). Photos, sidecars and catalogs are only read.
    """
    import time

    import numpy as np

    from aescore.inference.discover import discover
    from aescore.inference.loading import find_model
    from aescore.learn.evaluate import HeldOutScores, NoHeldOutPairs, compare, cross_validate, fit_personal, single_threaded_blas
    from aescore.learn.features import embed_photos, shoots_of, unreadable_photos
    from aescore.models.personal_head import log_odds, sigmoid
    from aescore.ratings import collect_ratings

    validate_name(name)
    replaces_default = check_replace(name, replace)
    model = _base_model(model)  # before the slow part
    if folds < 2:
        raise UsageError("folds must be at least 2")
    t0 = time.perf_counter()
    seconds: dict[str, float] = {}
    photos: list[str] = []
    problems: list[tuple[str, str]] = []
    if paths:
        found = discover([os.fspath(p) for p in paths])
        photos = [f.path for f in found.files]
        problems = list(found.problems)
        for skipped_path, reason in problems:
            if on_skip is not None:
                on_skip(skipped_path, reason)
        if not photos and not (ratings_csv or catalog or digikam_db):
            raise DataError("no photos found under the given paths")
    elif not (ratings_csv or catalog or digikam_db):
        raise UsageError("nothing to learn from: give photo folders, a catalog, a digiKam database or a ratings CSV")
    report = collect_ratings(
        photos, ratings_csv=ratings_csv, catalog=catalog, digikam_db=digikam_db,
        read_xmp=read_xmp, include_aescore=include_aescore,
    )
    not_photos = unreadable_photos(report.unrated_photos, on_skip)  # skipped, not "unrated"
    report.drop_unrated(p for p, _ in not_photos)
    problems += not_photos
    seconds["ratings"] = time.perf_counter() - t0
    if on_ratings is not None:
        on_ratings(report)
    _check_enough([r.rating for r in report.ratings], min_rated, "the ratings found")

    t1 = time.perf_counter()
    rating_of = {r.path: r.rating for r in report.ratings}
    emb = embed_photos([r.path for r in report.ratings], model, use_cache=use_cache, device=device,
                       progress=progress, on_skip=on_skip, warn=warn, with_faults=use_faults)
    seconds["embeddings"] = time.perf_counter() - t1
    r = np.array([rating_of[p] for p in emb.paths], dtype=np.int64)
    _check_enough(list(r), min_rated, "the photos that could be read")

    t2 = time.perf_counter()
    shoots = shoots_of(emb.paths)
    seconds["shoots"] = time.perf_counter() - t2
    t3 = time.perf_counter()
    with single_threaded_blas():
        try:
            cv = cross_validate(emb.embeddings, emb.generic, r, shoots.keys, shoots.times, use_generic=use_generic, k=folds, seed=seed,
                                faults=emb.faults)
            result = compare(cv.scores, emb.generic, r, shoots.keys, cv.folds, seed=seed, split=cv.split)
        except NoHeldOutPairs:
            raise NotEnoughRatings(
                "cannot check the personal model on held-out shoots: no held-out part has two photos with "
                "different ratings (are whole shoots rated alike?); rate within shoots as well"
            ) from None
        g = log_odds(emb.generic)
        f = None if emb.faults is None else log_odds(emb.faults)
        head = fit_personal(emb.embeddings, g if use_generic else None, r, shoots.keys, shoots.times, seed, f)
    seconds["learning"] = time.perf_counter() - t3
    evaluated = np.flatnonzero(cv.folds >= 0)
    # P(high) as `score` prints it: the personal model's logits are [0, s], softmax[:, 1] = sigmoid(s)
    # (compare() above ranked the logits s themselves: the same order, without float rounding ties).
    scores = HeldOutScores({emb.paths[i]: float(sigmoid(cv.scores[i])) for i in evaluated},
                           {emb.paths[i]: int(cv.folds[i]) for i in evaluated}, cv.heads)

    base_ref = find_model(model)
    extra: dict[str, Any] = {}
    baseline = None
    net = None
    if fine_tune:
        t4 = time.perf_counter()
        baseline = result
        net, result, extra, head, scores = _fine_tune(
            base_ref, emb, r, shoots,
            head_fn=lambda x, g_, rr, sh, tm, f_: fit_personal(x, g_ if use_generic else None, rr, sh, tm, seed, f_),
            device=device, config=fine_tune_config, seed=seed, folds=folds, name=name)
        seconds["fine_tune"] = time.perf_counter() - t4
    path, card = _save(name, net, base_ref, head, report, result, use_generic, len(r), extra, baseline)
    if replaces_default and warn is not None:
        warn(
            f"the default model {name!r} was replaced by the new one: score and rank now use it"
            + ("" if result.beats_generic else ", although it does not beat the generic model on held-out shoots")
        )
    seconds["total"] = time.perf_counter() - t0
    return LearnResult(report, problems + emb.skipped, result, path, card, len(r), seconds, baseline, replaces_default, scores)


def core_scores(net: Any, card: dict[str, Any], paths: Sequence[str], device: str) -> list[float]:
    """P(high) of each photo of ``paths`` under the network ``net`` (not saved yet; ``card``:
    what its card will hold, the recipe at least), computed as ``score --model`` computes it for
    the saved model on ``device``: a copy of ``net`` prepared as loading prepares a network
    (:func:`aescore.inference.loading.prepare_network`), run by the inference core
    (:func:`aescore.inference.core.infer`: the same decode and the same recipe inputs).
    DataError when a photo cannot be decoded any more."""
    import copy

    from aescore.inference.core import Job, infer
    from aescore.inference.loading import prepare_network

    loaded = prepare_network(copy.deepcopy(net), card, device)
    out: list[float] = []
    for result in infer(loaded, [Job(p) for p in paths], want=frozenset({"p_high"})):
        if result.reason is not None:
            raise DataError(f"{result.path}: {result.reason} (it could be read when learning began)")
        out.append(float(result.outputs["p_high"]))
    return out


def _base_model(model: Any) -> Any:
    """The base model to learn on: ``model``; for None, the default model — or, when the default
    is itself a personal model, the base it was learned on. UsageError for a personal model given
    explicitly (a head on a head would hide where the taste came from)."""
    from aescore.errors import WeightsError
    from aescore.weights import read_card, resolve_model

    base_path = resolve_model(None if model is None else str(model))
    card = read_card(base_path)
    if card.get("architecture") != "personal_ranker":
        return model
    base_name = ((card.get("training") or {}).get("base_model") or {}).get("name")
    if model is None and isinstance(base_name, str):
        try:
            resolve_model(base_name)
            return base_name
        except WeightsError:
            pass
    raise UsageError(f"{base_path.stem} is itself a personal model; learn on a generic base model")


def _build_net(base: Any, head: Any) -> Any:
    """``personal_ranker`` = the base network of ``base`` (a model name or file, or an
    :class:`~aescore.inference.loading.ModelRef`; its verified weights) + ``head`` (a
    :class:`~aescore.models.personal_head.PersonalHead`), as a network ``learn --fine-tune`` trains
    and saves whole. Needs torch."""
    from aescore.inference.loading import find_model
    from aescore.models import create_model
    from aescore.weights import load_weights

    ref = find_model(base)
    module, base_card = load_weights(ref.path, card=ref.card)
    net = create_model(
        "personal_ranker",
        base_architecture=str(base_card["architecture"]),
        base_args=dict(base_card["arch_args"]),
        embed_dim=head.embed_dim,
        n_faults=head.n_faults,
    )
    net.base.load_state_dict(module.state_dict(), strict=True)
    net.load_head(head)
    return net.eval()


def _fine_tune(base_ref: Any, emb: Any, r: Any, shoots: Any, head_fn: Any, device: str, config: Any, seed: int,
               folds: int, name: str) -> tuple[Any, Any, dict[str, Any], Any, Any]:
    """Fine-tune on all but one fold of shoots: ``(the fine-tuned network, held-out metrics on
    that fold, card fields, the starting head fitted on the training shoots, the held-out
    scores)`` (see :func:`learn`). The network is the base of ``base_ref`` with that head
    (:func:`_build_net`). The held-out photos are scored by the fine-tuned network as
    ``score --model NAME`` scores them (:func:`core_scores`)."""
    import numpy as np

    from aescore.devices import resolve_device
    from aescore.learn.evaluate import HeldOutScores, assign_folds, compare, single_threaded_blas
    from aescore.learn.finetune import FineTuneConfig, decode_for_model, fine_tune
    from aescore.models.personal_head import log_odds

    config = config or FineTuneConfig(seed=seed)
    dev = resolve_device(device)
    fold = assign_folds(shoots.keys, shoots.times, folds, seed)
    val = fold == 0
    train = ~val
    if len(set(r[train].tolist())) < 2 or len(set(r[val].tolist())) < 2:
        raise NotEnoughRatings("fine-tuning needs at least two different ratings on each side of its held-out split")
    g = log_odds(emb.generic)
    f = None if emb.faults is None else log_odds(emb.faults)
    with single_threaded_blas():
        head = head_fn(emb.embeddings[train], g[train], r[train], [shoots.keys[i] for i in np.flatnonzero(train)], shoots.times[train],
                       None if f is None else f[train])
    net = _build_net(base_ref, head)
    pp = base_ref.card["preprocess"]
    images = decode_for_model([emb.paths[i] for i in np.flatnonzero(train)], pp)  # the held-out fold is never decoded here
    steps = fine_tune(net, images, r[train], pp, dev, config)
    del images
    val_paths = [emb.paths[i] for i in np.flatnonzero(val)]
    personal = np.zeros(len(r))
    personal[val] = core_scores(net, {"name": name, "architecture": "personal_ranker", "preprocess": pp}, val_paths, dev)
    linear = np.zeros(len(r))
    linear[val] = head.score(emb.embeddings[val], g[val], None if f is None else f[val])
    split = "shoot (one held-out fold)"
    folds_val = np.where(val, 0, -1)
    result = compare(personal, emb.generic, r, shoots.keys, folds_val, seed=seed, split=split)
    before = compare(linear, emb.generic, r, shoots.keys, folds_val, seed=seed, split=split)
    net.to("cpu").eval()
    extra = {
        "fine_tuned": {
            "config": config.to_dict(), "steps": steps, "device": dev,
            "train_photos": int(train.sum()), "held_out_photos": int(val.sum()),
            "held_out_embedding_head_accuracy": before.personal_accuracy.value,
        }
    }
    scores = HeldOutScores({p: float(personal[i]) for i, p in zip(np.flatnonzero(val), val_paths)}, dict.fromkeys(val_paths, 0), {})
    return net, result, extra, head, scores


def _save(name: str, net: Any, base: Any, head: Any, report: Any, result: Any,
          use_generic: bool, photos: int, extra: dict[str, Any], baseline: Any) -> tuple[Path, dict[str, Any]]:
    """Save the personal model with its card under the user models folder: the fine-tuned network
    ``net`` whole, or (``net`` None) the head-only model (:func:`aescore.weights.save_head`: the
    head's tensors and a card naming the base model ``base``, a
    :class:`~aescore.inference.loading.ModelRef`, by name and sha256; no torch)."""
    from aescore.weights import save_head, save_weights, user_models_dir

    base_card = base.card
    per_source = {s.value: n for s, n in report.per_source().items()}
    features = ["embedding"] if math.isfinite(head.l2) else []
    features += ["generic_score"] if use_generic else []
    features += ["faults"] if head.n_faults else []
    training: dict[str, Any] = {
        "dataset": "personal ratings",
        "task": "personal-ranking",
        "base_model": {
            "name": base.name,
            "architecture": base_card["architecture"],
            "sha256": base_card["sha256"],
        },
        "ratings": {
            "photos": photos,
            "per_rating": {str(k): v for k, v in report.per_rating().items()},
            "per_source": per_source,
        },
        # An infinite L2 (JSON has no infinity) means the head kept no weight at all for that block.
        "head": {"kind": "pairwise logistic (linear RankNet)", "features": features,
                 "l2": head.l2 if math.isfinite(head.l2) else None,
                 "l2_faults": head.l2_faults if math.isfinite(head.l2_faults) else None,
                 "uses_embedding": math.isfinite(head.l2), "uses_generic_score": use_generic,
                 "uses_faults": bool(head.n_faults)},
    }
    training.update(extra)
    metrics: dict[str, Any] = {"held_out": result.to_dict()}
    if baseline is not None:
        metrics["held_out_embedding_head"] = baseline.to_dict()
    card = {
        "name": name,
        "summary": (
            f"Personal ranking model learned from {photos} rated photos on top of {base.name}"
            + (" (backbone fine-tuned)" if extra.get("fine_tuned") else "")
            + ": scores how this photographer would rate a photo, not a general quality."
        ),
        "preprocess": base_card["preprocess"],
        "training": training,
        "metrics": metrics,
    }
    folder = user_models_dir()
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{name}.safetensors"
    if net is None:
        written = save_head(head, target, card, base_card=base_card, base_name=base.name, base_path=base.path)
    else:
        written = save_weights(net, target, card)
    return folder / f"{name}.json", written


def make_default(result: LearnResult, force: bool = False) -> bool:
    """Make the personal model the default for score/rank when it beats the generic model on
    held-out shoots (or always with ``force``). Returns whether it was made the default."""
    if not (result.held_out.beats_generic or force):
        return False
    from aescore.weights import set_default_model

    set_default_model(result.name)
    return True
