"""The ``framing`` check: what ``--crop`` needs to place a crop, cached like any check's fields.

Two hidden fields, both independent of the crop's aspect (so ``--crop 400x400`` after ``--crop
300x200`` decodes nothing again): ``size``, the upright photo's own ``[width, height]`` in pixels
(before JPEG draft decoding: :class:`~aescore.checks.PhotoData`'s ``size``), and ``structure``, a
coarse grid of where the photo has structure, by the measure the default model's detail crops are
placed with (:func:`aescore.data.transforms.structure_map`). The crop box itself is computed from
these and the faces check's boxes by :mod:`aescore.cull.crops`. ``aescore score/rank --crop``
runs this check; it is listed by no ``--help`` (its fields are not printed).
"""

from __future__ import annotations

from typing import Any

from aescore.checks.base import Check, Field, FieldKind, Needs, PhotoData, register_check

#: Cells of the structure grid on the photo's long edge (the short edge gets its share).
GRID_CELLS = 16
#: Reduced pixels per grid cell on each side: the structure map is measured at the scale
#: :func:`~aescore.data.transforms.detail_boxes` measures a detail tile at (16 x 16 per tile).
PIXELS_PER_CELL = 16


def grid_shape(width: int, height: int) -> tuple[int, int]:
    """``(rows, cols)`` of the structure grid of a ``width`` x ``height`` photo."""
    long_edge = max(width, height, 1)
    cols = max(1, round(GRID_CELLS * width / long_edge))
    rows = max(1, round(GRID_CELLS * height / long_edge))
    return rows, cols


def structure_grid(image: Any) -> list[list[int]]:
    """Mean structure per cell of a grid over ``image`` (uint8 H x W x 3), as whole numbers 0-255
    relative to the strongest cell (all 0 for a flat image)."""
    import numpy as np
    from PIL import Image

    from aescore.data.transforms import structure_map

    height, width = image.shape[:2]
    rows, cols = grid_shape(width, height)
    factor = max(1, max(width, height) // (GRID_CELLS * PIXELS_PER_CELL))
    lap = structure_map(Image.fromarray(image), factor) if min(width, height) >= 3 * factor else np.zeros((0, 0))
    if lap.size == 0:
        return [[0] * cols for _ in range(rows)]
    lap = np.pad(lap, 1, mode="edge")  # the stencil's lost border, so cells cover the whole photo
    cells = np.asarray(Image.fromarray(lap.astype(np.float32)).resize((cols, rows), Image.Resampling.BOX))
    strongest = float(cells.max())
    if not strongest > 1e-6:
        return [[0] * cols for _ in range(rows)]
    return np.rint(cells * (255.0 / strongest)).astype(int).tolist()


class FramingCheck(Check):
    """The photo's own size and where its structure is (for ``--crop``)."""

    name = "framing"
    description = "the photo's own size and a coarse map of where it has structure (for --crop)"
    version = 1
    needs = Needs(image_size=512)
    fields = (
        Field("size", FieldKind.HIDDEN, "[width, height] of the upright photo, pixels"),
        Field("structure", FieldKind.HIDDEN, "rows of 0-255: mean structure per grid cell, relative to the strongest"),
    )

    def compute(self, photo: PhotoData) -> dict[str, Any]:
        height, width = photo.image.shape[:2]
        size = photo.size or (width, height)
        return {"size": [int(size[0]), int(size[1])], "structure": structure_grid(photo.image)}


register_check(FramingCheck())
