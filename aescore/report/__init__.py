"""The contact sheet: an offline HTML page of a run, and the decisions made there back into sidecars.

``build_report`` writes the page from :class:`ReportPhoto` records (what the culling API produces
per photo); ``load_decisions`` / ``apply_decisions`` read the JSON file the page exports and write
its ratings into XMP sidecars (``aescore apply``).
"""

from aescore.report.decisions import (
    Decision,
    DecisionOutcome,
    DecisionsError,
    DecisionsFile,
    apply_decisions,
    load_decisions,
)
from aescore.report.page import ReportError, ReportPhoto, ReportStats, build_report, check_output, files_dir_for
from aescore.data.thumbs import MAX_THUMBNAIL_BYTES, THUMBNAIL_EDGE, make_thumbnail

__all__ = [
    "Decision",
    "DecisionOutcome",
    "DecisionsError",
    "DecisionsFile",
    "MAX_THUMBNAIL_BYTES",
    "ReportError",
    "ReportPhoto",
    "ReportStats",
    "THUMBNAIL_EDGE",
    "apply_decisions",
    "build_report",
    "check_output",
    "files_dir_for",
    "load_decisions",
    "make_thumbnail",
]
