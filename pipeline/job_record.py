"""An output folder belongs to one job: the job record `_job.json`, and the checks made before a job writes there.

Every job that writes an output folder (tokenize, training runs, exports) goes through `OutputClaim`:

    claim = OutputClaim(layout, kind="tokenize", settings=..., source=input_url, append=cfg.append)
    claim.check()      # read-only, before anything is written: refuse with a ConfigError (exit 2) when ...
    ...                # ... listing the input, planning: a failure here leaves no record behind
    claim.record(digest)   # the job record, written once the listing succeeded

What `check` refuses, and why:

| the folder holds                                   | outcome                                                   |
|----------------------------------------------------|-----------------------------------------------------------|
| nothing (or does not exist)                        | ours                                                      |
| only what a run leaves before its record (`_plan/`) | ours (a first run that failed while listing)              |
| a `_job.json` of another kind of job               | refused: name the kind found                              |
| anything else, no `_job.json`                      | refused: a folder of the user's (files are listed)        |
| data (`data` folders non-empty), other settings    | refused: the rows would mean two things                   |
| data of another input, `append=false`              | refused: two corpora would merge silently                 |
| a record but no data, other settings or input      | ours: the record is rewritten (it described nothing)      |

The record holds the job kind, the settings that define what the output's rows mean, and each input that fed it:
its URL (local paths absolute) and a digest of its listing's first page, or of the manifest's bytes. A changed digest
under the same URL is a grown or edited corpus (new objects are picked up, as documented), so it is logged, not
refused. Pure: no Ray.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import posixpath
import time
from typing import Iterable, Iterator

from pipeline.config import ConfigError
from pipeline.storage import OutputLayout, is_remote, local_path

log = logging.getLogger(__name__)

RECORD = "_job.json"
# What a job of this project may leave in its output folder before it writes the record (a run that failed while
# listing): a folder holding only these is ours. Nothing a user would name a file of theirs (README.md is not here).
PRE_RECORD_NAMES = frozenset({"_plan", "_logs", "_stats", "_index", "sample_corpus"})


def normalize_source(source: str) -> str:
    """An input's identity as recorded: URLs as given (no trailing slash), local paths absolute."""
    return source.rstrip("/") if is_remote(source) else local_path(source).rstrip("/")


def listing_digest(chunks: Iterable, into: dict) -> Iterator:
    """Pass `chunks` (Arrow tables with a `source` column) through, putting a digest of the first one's sources in
    `into["digest"]`: the listing's first page identifies a corpus without reading it all."""
    for i, chunk in enumerate(chunks):
        if i == 0:
            h = hashlib.sha256()
            for s in chunk.column("source").to_pylist():
                h.update(s.encode() + b"\n")
            into["digest"] = h.hexdigest()[:16]
        yield chunk


class OutputClaim:
    """The checks and the record of one job's output folder (module docstring)."""

    def __init__(self, layout: OutputLayout, kind: str, settings: dict, source: str | None = None,
                 append: bool = False, data: tuple[str, ...] = ("tokens", "status"), legacy: str | None = None):
        """`data`: folders whose files are the output's data ("" = the folder itself); `legacy`: a name that marks
        an output of this kind written before job records existed (taken as ours)."""
        self.layout, self.kind, self.settings = layout, kind, settings
        self.source = normalize_source(source) if source else None
        self.append, self.data, self.legacy = append, data, legacy
        self.found: dict | None = None

    def check(self) -> "OutputClaim":
        """Raise ConfigError if this job must not write into the folder; read-only."""
        names = self._top_names()
        if not names:
            return self
        text = self.layout.read_text(RECORD) if RECORD in names else None
        if text is None and self.legacy and self.legacy in names:
            return self
        if text is None:
            foreign = sorted(n for n in names if n.rstrip("/") not in PRE_RECORD_NAMES)
            if foreign:
                shown = ", ".join(foreign[:6]) + (f" and {len(foreign) - 6} more" if len(foreign) > 6 else "")
                raise ConfigError(
                    f"output {self.layout.url} is not empty and is not an output of this project (no {RECORD}): "
                    f"found {shown}. The job writes only into a new or empty folder, or into its own earlier "
                    f"output, so it never mixes its files with yours or overwrites them: choose another output= "
                    f"(e.g. output={posixpath.join(self.layout.url.rstrip('/'), self.kind)})")
            return self
        self.found = json.loads(text)
        kind = self.found.get("kind", "tokenize")  # records written before kinds existed are tokenize outputs
        if kind != self.kind:
            raise ConfigError(f"output {self.layout.url} is the output of a {kind!r} job ({RECORD}), not of this "
                              f"{self.kind!r} job: choose another output=")
        if not self._holds_data():
            return self  # an earlier run failed before committing anything: its record describes nothing
        was = self.found.get("settings", self.found)  # older records: the settings at the top level
        diff = {k: (was.get(k), v) for k, v in self.settings.items() if was.get(k) != v}
        if diff:
            raise ConfigError(f"output {self.layout.url} holds data made with other settings {diff} (was, now): "
                              "use a new output=..., or the same settings to resume")
        inputs = [i["url"] for i in self.found.get("inputs", [])]
        if self.source and inputs and self.source not in inputs and not self.append:
            raise ConfigError(
                f"output {self.layout.url} holds the output of input {', '.join(inputs)}; this run's input is "
                f"{self.source}. Adding a second corpus would merge the two datasets silently: use a new "
                "output=..., or append=true to add this input's videos to the same dataset")
        return self

    def record(self, digest: str | None = None) -> None:
        """Write the job record (once the input was listed): kind, settings, every input with its digest."""
        inputs = list((self.found or {}).get("inputs", [])) if self._kept() else []
        mine = next((i for i in inputs if i["url"] == self.source), None)
        if self.source and mine is None:
            inputs.append({"url": self.source, "digest": digest, "first_run": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                            time.gmtime())})
        elif mine is not None and digest and mine.get("digest") not in (None, digest):
            log.info("input %s lists differently than when this output was started (first page digest %s, now %s): "
                     "new or changed objects are picked up", self.source, mine.get("digest"), digest)
        body = {"kind": self.kind, "settings": self.settings, "inputs": inputs}
        self.layout.write_bytes(RECORD, (json.dumps(body, indent=2, sort_keys=True) + "\n").encode())
        self.found = body

    # ------------------------------------------------------------------------------------------------------ helpers
    def _kept(self) -> bool:
        return self.found is not None and self._holds_data()

    def _holds_data(self) -> bool:
        skip = PRE_RECORD_NAMES | {RECORD}
        return any(posixpath.basename(p.rstrip("/")) not in skip for d in self.data
                   for p in self.layout.list(d, suffix=""))

    def _top_names(self) -> list[str]:
        """Names directly under the folder (folders with a trailing '/'); [] when it does not exist."""
        layout = self.layout
        if layout.local:
            root = layout.path()
            if not os.path.isdir(root):
                if os.path.exists(root):
                    raise ConfigError(f"output {layout.url} is a file, not a folder: choose a folder for output=")
                return []
            return [n + ("/" if os.path.isdir(os.path.join(root, n)) else "") for n in os.listdir(root)]

        def ls():
            try:
                return layout.fs.ls(layout.path(), detail=True, refresh=True)
            except FileNotFoundError:
                return []
        entries = layout.call(ls, f"list {layout.url}")
        return [posixpath.basename(e["name"].rstrip("/")) + ("/" if e.get("type") == "directory" else "")
                for e in entries]
