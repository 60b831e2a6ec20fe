"""What an answer shows of the server itself.

A failed job's traceback and the server's own paths (its home, artefact store, data roots and
Python installation) tell an operator where to look, and tell anyone else how the server is
laid out. They stay in the server's log and the job's log, and reach API answers only from a
server started with ``--debug`` (``MODELYARD_DEBUG``). Otherwise a traceback is dropped and
each such path in a message becomes a placeholder (``<data root>/payments.parquet``): the
message still says what went wrong and where, relative to what the client knows.

Paths a request gave are the client's own and stay as they were written.
"""

from __future__ import annotations

import functools
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from modelyard.api.schemas import ExceptionRecord
from modelyard.settings import Settings


@dataclass(frozen=True)
class Redactor:
    """Rewrites the text and error records of answers for clients (see the module)."""

    debug: bool
    pattern: re.Pattern[str] | None
    placeholders: Mapping[str, str]

    def text(self, text: str) -> str:
        """``text`` with the server's paths replaced by their placeholders."""
        if self.debug or self.pattern is None:
            return text
        return self.pattern.sub(lambda m: self.placeholders[m.group(0)], text)

    def exception_info(self, info: Mapping[str, Any] | None) -> ExceptionRecord | None:
        """A job's error record as a client sees it: no traceback (unless debug), the message
        redacted."""
        if info is None:
            return None
        record = ExceptionRecord.model_validate(info)
        if self.debug:
            return record
        return record.model_copy(update={"message": self.text(record.message),
                                         "traceback": None})


@functools.lru_cache(maxsize=8)
def redactor_for(settings: Settings) -> Redactor:
    """The redactor of a server's settings (built once per settings)."""
    named: dict[str, str] = {}

    def add(path: str | os.PathLike[str], placeholder: str) -> None:
        text = os.fspath(path)
        if "://" in text or not os.path.isabs(text):
            return  # an object store's URL is configuration a client uses, not a local path
        for variant in (text, os.path.realpath(text)):
            variant = variant.rstrip(os.sep)
            if variant and variant not in named:
                named[variant] = placeholder

    # Inner folders first, so the most precise placeholder wins where folders nest.
    add(settings.logs_dir, "<logs>")
    add(settings.artifact_root, "<artifacts>")
    for root in settings.data_roots:
        add(root, "<data root>")
    add(settings.home, "<home>")
    for prefix in {sys.prefix, sys.base_prefix, sys.exec_prefix}:
        add(prefix, "<python>")
    if not named:
        return Redactor(settings.debug, None, {})
    # Longest first, and only whole path segments: /srv/data is not a prefix of /srv/data2.
    alternatives = "|".join(re.escape(p) for p in sorted(named, key=len, reverse=True))
    pattern = re.compile(rf"(?:{alternatives})(?![\w.-])")
    return Redactor(settings.debug, pattern, named)
