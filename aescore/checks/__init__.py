"""Per-photo checks: small registered units that turn a decoded photo, the network's outputs and
EXIF into named fields (docs/architecture.md, "Checks").

A check declares what it :class:`Needs`, which :class:`Field` s it computes, and a ``version``
that is part of its cache key. The culling pipeline (:mod:`aescore.cull`) decodes each photo once
for all checks, runs the network once, caches each check's fields, and every output format
renders whatever fields the checks produced. Adding a check = one module + :func:`register_check`.
"""

from aescore.checks.base import Check, Field, FieldKind, Needs, PhotoData, available_checks, get_check, register_check

__all__ = ["Check", "Field", "FieldKind", "Needs", "PhotoData", "available_checks", "get_check", "register_check"]
