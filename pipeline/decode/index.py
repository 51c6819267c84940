"""The video index: what the probe learnt about each input, stored as Parquet so no job probes it twice.

One row per input: the source's identity as listed (``source``, ``source_size``, ``source_etag``,
``source_mtime``) and every field of its :class:`pipeline.decode.probe.ProbeInfo` — container and codec, size,
rotation, frame rate, duration, every frame's presentation time (``pts_ticks``, delta-coded so Parquet's run-length
encoding stores a constant-rate video in a few bytes), the key frames the decoder may restart at (time
``restart_ticks`` and byte offset ``restart_pos``) and how they were found (``indexed_from``: ``header`` for
MP4/MOV sample tables, ``demux`` otherwise; ``pipeline/decode/header.py``). That is all the exact 3 FPS rule
(``resample.select_frames``) and the window plan need, so a reader turns a row back into the ``ProbeInfo`` the
probe would give (``info_of``; exact, tested on the decode matrix). For MP4/MOV a row also holds what a decoder
needs to decode a window without opening the container (``packets.py``): the codec's ``extradata`` and the packet
table (``pkt_pts`` delta-coded, ``pkt_pos`` as the gap before each packet, ``pkt_size``, ``pkt_key``: every video
packet in decode order, the information of the `moov` box's sample tables; a keyed row of a 60-s 30 fps video is
16 KB). Rows of parts written before
these columns existed read back with an empty table (windows then decode through the container).

Where it lives (``<output>/_index/`` by default; any job can be pointed at another's): one keyed row file per input,
``by-source/<h[:2]>/<h>.parquet``, ``h`` the sha1 of the source URL (``find`` / ``keep``; ``lookup`` for a batch of
inputs, read in parallel), found without a listing. Written by whoever probes an input that decodes: the tokenize
decode stage (for every input that gives windows), its split stage (a long input, before its segments), the frames
cache job and training on first use; read by the decode stage for an input with windows committed before and for a
segment, by the split stage, the dry run (``lookup``), the frames cache and training (``indexed_info``). Training
decides the layout: a decode task draws one video per item out of up to 10^6, so it must reach that video's row
alone — not load the index (10^6 rows of packet tables are gigabytes), not list or scan thousands of parts for
every clip. One HEAD (the object's identity) and one GET of one small file (16 KB for a minute at 30 fps) per clip;
a miss (first use, or a changed object) probes the video once, isolated and time-limited like a decode, and writes
its row; concurrent first uses write the same row, atomically, last one wins. Alternatives weighed: the driver
resolving every row once and shipping them with the items (memory grows with the corpus, and the packet tables
would ride in every task), or parts partitioned by source hash (still a listing plus footers per lookup, and a
writer per partition). (An earlier layout of batch parts, ``part-<time>-<random>.parquet``, is no longer written
or read.)

When it is rebuilt: a row counts only for the same source with the same size and, where the listing (or the object's
metadata: ``identity_of``, one HEAD) gives them, the same etag and mtime (``find``), so a replaced object is probed
again and its new row overwrites the old. Only successful probes are stored: a failure is the status table's
business, and a transient one must be retried.

Pure pyarrow/numpy (no Ray), so it unit-tests without a cluster; a miss in ``indexed_info`` probes through the
decode child (``sample.probe_source``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import posixpath
from dataclasses import fields
from fractions import Fraction
from typing import Iterable

import numpy as np
import pyarrow as pa

from pipeline.storage import OutputLayout, is_remote, join, local_path, url_to_fs

from .probe import ProbeInfo

log = logging.getLogger(__name__)

INDEX_DIR = "_index"
PROBE_BLOCK_BYTES = 1 << 20  # read block of a probe that fills the index on a miss (indexed_info)
LOOKUP_THREADS = 16  # keyed rows read at once by `lookup`
KEYED_DIR = "by-source"  # one row file per input, named by the hash of its URL (VideoIndex.find / keep)
_ARRAYS = ("pts_ticks", "restart_ticks", "restart_pos", "pkt_pts", "pkt_pos", "pkt_size")  # int64 arrays
_DELTAS = ("pts_ticks", "pkt_pts")  # stored delta-coded (small, repetitive numbers compress well)
_FRACTIONS = ("time_base", "rate")

SCHEMA = pa.schema([
    ("source", pa.string()), ("source_size", pa.int64()), ("source_etag", pa.string()),
    ("source_mtime", pa.float64()),
    ("format_name", pa.string()), ("codec", pa.string()), ("width", pa.int32()), ("height", pa.int32()),
    ("pix_fmt", pa.string()), ("num_packets", pa.int64()), ("avg_fps", pa.float64()), ("duration_s", pa.float64()),
    ("rotation", pa.int16()), ("end_s", pa.float64()), ("end_tick", pa.int64()),
    ("time_base", pa.string()), ("rate", pa.string()), ("rates", pa.list_(pa.string())),
    ("pts_reliable", pa.bool_()), ("decord_ok", pa.bool_()), ("cfr_order", pa.bool_()), ("reordered", pa.bool_()),
    ("indexed_from", pa.string()), ("notes", pa.list_(pa.string())),
    ("pts_ticks", pa.list_(pa.int64())), ("restart_ticks", pa.list_(pa.int64())), ("restart_pos", pa.list_(pa.int64())),
    ("extradata", pa.binary()), ("pkt_pts", pa.list_(pa.int64())), ("pkt_pos", pa.list_(pa.int64())),
    ("pkt_size", pa.list_(pa.int64())), ("pkt_key", pa.list_(pa.bool_())),
])


IDENTITY_KEYS = ("source", "source_size", "source_etag", "source_mtime")  # an input as listed: what a row is for


def identity(row: dict) -> dict:
    """The listed identity of an input (``IDENTITY_KEYS`` of a plan or listing row; absent ones None)."""
    return {k: row.get(k) for k in IDENTITY_KEYS}


def record_of(identity_: dict, info: ProbeInfo) -> dict:
    """A row of the index: ``identity_`` (``source`` and, as known, ``source_size/etag/mtime``) plus ``info``."""
    row = identity(identity_)
    for f in fields(ProbeInfo):
        v = getattr(info, f.name)
        if f.name == "pts":
            continue
        if f.name in _ARRAYS:
            v = np.asarray(v, np.int64)
            v = np.diff(v, prepend=0).tolist() if f.name in _DELTAS else v.tolist()
        elif f.name in _FRACTIONS:
            v = str(Fraction(v))
        elif f.name == "rates":
            v = [str(Fraction(r)) for r in v]
        elif f.name == "notes":
            v = list(v)
        elif f.name == "pkt_key":
            v = np.asarray(v, bool).tolist()
        elif f.name == "extradata":
            v = bytes(v)
        row[f.name] = v
    if len(info.pkt_pos):  # stored as the gap before each packet (mostly 0: packets follow each other)
        row["pkt_pos"] = (info.pkt_pos - _ends_before(info.pkt_pos, info.pkt_size)).tolist()
    return row


def _ends_before(pos: np.ndarray, size: np.ndarray) -> np.ndarray:
    """Per packet, where the packet before it ends (0 for the first)."""
    return np.concatenate([[0], (pos + size)[:-1]]).astype(np.int64)


def info_of(row: dict) -> ProbeInfo:
    """The ``ProbeInfo`` an index row stands for (the inverse of ``record_of``)."""
    kw = {}
    for f in fields(ProbeInfo):
        if f.name == "pts":
            continue
        if f.name not in row:  # a part written before the field existed: its default
            continue
        v = row[f.name]
        if f.name in _ARRAYS:
            v = np.asarray(v or [], np.int64)
            if f.name in _DELTAS:
                v = np.cumsum(v, dtype=np.int64)
        elif f.name == "pkt_key":
            v = np.asarray(v or [], bool)
        elif f.name == "extradata":
            v = bytes(v or b"")
        elif f.name in _FRACTIONS:
            v = Fraction(v)
        elif f.name == "rates":
            v = tuple(Fraction(r) for r in v or [])
        elif f.name == "notes":
            v = list(v or [])
        kw[f.name] = v
    info = ProbeInfo(pts=np.empty(0), **kw)
    if len(info.pkt_pos):
        gaps = info.pkt_pos  # pos[j] = gap[j] + pos[j-1] + size[j-1]
        info.pkt_pos = np.cumsum(gaps + np.concatenate([[0], info.pkt_size[:-1]]), dtype=np.int64)
    if info.pts_reliable:
        info.pts = info.pts_ticks * float(info.time_base)
    return info


def _matches(row: dict, identity: dict) -> bool:
    """Same object: equal size, and equal etag / mtime wherever both the row and the listing have one."""
    if identity.get("source_size") is not None and row["source_size"] != identity["source_size"]:
        return False
    for k in ("source_etag", "source_mtime"):
        if identity.get(k) is not None and row[k] is not None and row[k] != identity[k]:
            return False
    return True


class VideoIndex:
    """The ``_index/`` folder of an output (or any folder holding index parts)."""

    def __init__(self, layout: OutputLayout, folder: str = INDEX_DIR):
        self.layout, self.folder = layout, folder

    def lookup(self, identities: Iterable[dict]) -> dict[str, ProbeInfo]:
        """``source -> ProbeInfo`` for the given inputs that have a current keyed row (absent: not indexed, or
        changed), `LOOKUP_THREADS` rows read at once (an object store answers each in ~10-30 ms)."""
        from concurrent.futures import ThreadPoolExecutor

        want = list({i["source"]: i for i in identities}.values())
        if not want:
            return {}
        with ThreadPoolExecutor(min(LOOKUP_THREADS, len(want))) as pool:
            found = pool.map(self.find, want)
        return {i["source"]: info for i, info in zip(want, found) if info is not None}

    @classmethod
    def at(cls, url: str, storage_options: dict | None = None) -> "VideoIndex":
        """The index whose folder is ``url`` (e.g. ``s3://bucket/tokens/_index``: the ``index=`` key of a job)."""
        return cls(OutputLayout(url, storage_options or {}), "")

    @classmethod
    def of_job(cls, layout: OutputLayout, url: str = "") -> "VideoIndex":
        """A job's index (``job_index_url``): the folder its ``index=`` key names, else ``_index/`` under its output
        ``layout`` (with the layout's retry policy)."""
        return cls.at(url, layout.storage_options) if url else cls(layout)


    def _keyed(self, source: str) -> str:
        h = hashlib.sha1(source.encode()).hexdigest()
        return posixpath.join(self.folder, KEYED_DIR, h[:2], f"{h}.parquet")

    def find(self, identity: dict) -> ProbeInfo | None:
        """The current row of one input from its keyed file (one read, no listing), or None (absent or changed)."""
        rel = self._keyed(identity["source"])
        try:
            rows = self.layout.read_table(self.layout.path(rel)).to_pylist()
        except FileNotFoundError:
            return None
        rows = [r for r in rows if r["source"] == identity["source"] and _matches(r, identity)]
        return info_of(rows[-1]) if rows else None

    def keep(self, identity: dict, info: ProbeInfo) -> None:
        """Write (atomically, replacing an older version's) the keyed row of one input."""
        self.layout.write_table(self._keyed(identity["source"]),
                                pa.Table.from_pylist([record_of(identity, info)], schema=SCHEMA))

    def try_find(self, identity: dict) -> ProbeInfo | None:
        """``find``, a failure (store down, a foreign file) logged and taken as a miss: a row only spares a probe,
        so the caller probes as it would without an index."""
        try:
            return self.find(identity)
        except Exception as e:
            log.warning("video index %s: could not read the row of %s (%s: %s); probing it", self.layout.url,
                        identity["source"], type(e).__name__, e)
            return None

    def try_keep(self, identity: dict, info: ProbeInfo) -> None:
        """``keep``, a failure logged: it costs only a later job's probe, never the input."""
        try:
            self.keep(identity, info)
        except Exception as e:
            log.warning("video index %s: could not write the row of %s (%s: %s); a later job probes it again",
                        self.layout.url, identity["source"], type(e).__name__, e)


def job_index_url(output: str, index: str = "") -> str:
    """The URL of a job's video index: its ``index=`` key, else ``<output>/_index`` (``VideoIndex.of_job``)."""
    return index or join(output, INDEX_DIR)


def check_index_url(key: str, url: str) -> None:
    """Fail fast, naming ``key``, when ``url`` cannot be an index folder: an unknown scheme or a local file."""
    if not url:
        return
    try:
        url_to_fs(url)
    except Exception as e:  # fsspec: ValueError for an unknown protocol, ImportError for a missing driver
        raise ValueError(f"{key}={url!r}: not a usable folder URL ({type(e).__name__}: {e}); give the folder of a "
                         f"video index, e.g. s3://bucket/tokens/_index, or leave {key} empty") from None
    if not is_remote(url) and os.path.isfile(local_path(url)):
        raise ValueError(f"{key}={url!r} is a file, not a video index folder (e.g. <tokenize output>/_index), or "
                         f"leave {key} empty")


def identity_of(source: str, storage_options: dict | None = None) -> dict:
    """``source``'s identity as the store states it now (one metadata request: size, etag, mtime)."""
    from pipeline.inputs import source_row

    fs, path = url_to_fs(source, storage_options)
    return {**source_row(fs, fs.info(path)), "source": source}


def indexed_info(index: "VideoIndex", source: str, cfg, storage_options: dict | None = None) -> ProbeInfo | None:
    """``source``'s probe result from ``index``; on a miss (not indexed, or changed since) it is probed (isolated
    and time-limited like the decode, ``cfg``: a ``DecodeConfig``) and its keyed row written. None when the source
    cannot be read or probed: the caller's decode then reports why, as without an index."""
    from .sample import probe_source

    try:
        identity = identity_of(source, storage_options)
    except Exception as e:  # missing, denied, the store down: the decode says which, with its reason class
        log.info("no identity for %s (%s: %s): decoded without the index", source, type(e).__name__, e)
        return None
    try:
        info = index.find(identity)
    except Exception as e:  # the index unreadable (store down, a foreign file): decode as without one
        log.warning("video index %s unreadable for %s (%s: %s): probing the source", index.layout.url, source,
                    type(e).__name__, e)
        return None
    if info is None:  # read blocks of at most 1 MiB: an MP4's header probe fetches the first and the `moov` one(s)
        probe_cfg = dataclasses.replace(cfg, read_block_bytes=min(cfg.read_block_bytes, PROBE_BLOCK_BYTES))
        info = probe_source(source, probe_cfg, storage_options)
        if info is not None:  # a failed write: a later clip probes again; this one goes on with what it has
            index.try_keep(identity, info)
    return info
