"""A run's finished work, appended to a JSON-lines file as it happens, so that hours of
training or evaluation survive a stop (Ctrl+C, a restart): the run resumes after the last
thing it recorded.

The first line holds the run's settings; a run resumed over a journal of other settings is
refused. Each further line is one finished step, written whole and fsynced; a line cut short
by the stop is dropped on resume.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


class JournalMismatch(ValueError):
    """The journal was written by a run with other settings, or is not a journal."""


class Journal:
    """``entries``: what the journal held when resumed (nothing for a fresh run)."""

    def __init__(self, path: Path, settings: dict[str, Any], *, resume: bool = False):
        self.path = path
        self.settings = json.loads(json.dumps(settings))  # compared as it reads back
        self.entries: list[dict[str, Any]] = []
        if resume and path.is_file():
            self._read()
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("w") as out:
                out.write(json.dumps({"settings": self.settings}) + "\n")

    def _read(self) -> None:
        entries = []
        for line in self.path.read_text().splitlines():
            if not line.strip():
                continue
            try:
                entries.append(json.loads(line))
            except ValueError:  # cut short by the stop: it and anything after it are dropped
                break
        if not entries or "settings" not in entries[0]:
            raise JournalMismatch(f"{self.path} is not a journal of this command")
        theirs = entries[0]["settings"]
        changed = sorted(
            k for k in {*theirs, *self.settings} if theirs.get(k) != self.settings.get(k)
        )
        if changed:
            raise JournalMismatch(
                f"{self.path} was written by a run with other settings ({', '.join(changed)}); "
                "resume it with the same command, or start afresh without --resume"
            )
        self.entries = entries[1:]
        # what survived is written back whole, so that a cut-off line is gone before appending
        with self.path.open("w") as out:
            for entry in entries:
                out.write(json.dumps(entry) + "\n")

    def append(self, entry: dict[str, Any]) -> None:
        with self.path.open("a") as out:
            out.write(json.dumps(entry) + "\n")
            out.flush()
            os.fsync(out.fileno())
