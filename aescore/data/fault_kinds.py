"""The fault vocabulary of the default model's reasons head, in output order (issue 12).

Kept here, import-light and at the bottom of the layers (data), because the fault generator, the
reasons head, the `reasons` check and the CLI all name it.
"""

from __future__ import annotations

FAULT_KINDS: tuple[str, ...] = ("defocus", "motion", "noise", "underexposure", "overexposure", "haze",
                                "jpeg", "colour_cast", "tilt", "crop")
