"""Probe a video with PyAV (demux only, plus the first frame for its display matrix) and judge the decode paths.

The probe opens the container, picks the first video stream and demuxes its packets — cheap next to decoding —
to learn the frame count, each packet's presentation time, and whether the file holds all the data its index
promises (an MP4/MOV from its header: its media data reads as zeros, ``header.py``; ``ProbeInfo.indexed_from``).
From that it classifies broken inputs (``not_a_video``, ``truncated``, ``unsupported_codec``,
``corrupt``) and says which backend can be trusted:

* **decord** only where it was measured right (H.264/HEVC/VP9/MPEG-4 in MP4/MOV/MKV/WebM; MPEG-4 part 2 only
  without B-frames, see ``DECORD_NO_REORDER``) *and* the demuxed timestamps are complete, finite and unique —
  decord orders frames by the same timestamps, and the decord path checks its frame list against them;
* **pyav** everywhere FFmpeg can decode, including what decord gets wrong or cannot open: AVI (no presentation
  times, B-frames come out wrong in decord), MPEG-PS (decord is 12 frames off on a real .mpg), AV1/Theora.

Trust table, per backend, measured on the decode matrix (``tests/decode/test_matrix.py``) and
``tests/decode/test_stream.py``:

=================  ==========================================================================================
PyAV (FFmpeg 5+)   right on every case (the reference path); the only path for AVI, MPEG-PS, Theora/Ogg
decord 0.6.0       right where ``decord_ok`` (above); wrong frames (2 late) for MPEG-4 part 2 with B-frames;
                   raises "DECORDArrayCopyFromTo: The size must exactly match" on some small frame sizes
                   (48×40, 48×48, 72×40 of those tried) — caught while decoding, the file falls back to PyAV
decord2 3.4.0      the same ``decord_ok`` cases right; the same size failure on other sizes (48×40, 48×48,
                   32×32, 96×40 of those tried), with the same fallback
torchcodec 0.17    (CPU, ``seek_mode="exact"``) right on all MP4/MKV/WebM cases, MPEG-4 with B-frames and AV1
                   included; 2 frames off on AVI with B-frames and MPEG-PS: used only for ``decode.device=cuda``,
                   only where ``pts_reliable`` (``pipeline/decode/gpu.py``)
=================  ==========================================================================================

``backend="auto"`` (the default) and ``"pyav"`` decode with PyAV: with the probe's timestamps it skips decoding the
non-reference frames that nothing samples, which decord cannot do, and it was the fastest on the benchmark
(``benchmarks/decode.py``, ``docs/benchmarks.md``). ``backend="decord"`` uses decord where it is trusted and PyAV
elsewhere, and wherever decord fails while decoding.

The decision is made from what the probe read (format and codec names, timestamps), never from the file name.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from .header import ALIGN_BYTES, KEEP_BYTES, HeaderView, is_mp4
from .source import Readable, RemoteObject, as_file, open_binary, size_of
from .status import CORRUPT, NOT_A_VIDEO, TRUNCATED, UNSUPPORTED_CODEC, DecodeError

log = logging.getLogger(__name__)

DECORD_FORMATS = {"mov", "mp4", "matroska", "webm"}  # FFmpeg demuxer names (split from "mov,mp4,m4a,...")
DECORD_CODECS = {"h264", "hevc", "vp9", "mpeg4"}
# ... except these when frames are reordered (B-frames): decord returns frames 2 late for MPEG-4 part 2 with B-frames
# in MP4 (found by tests/decode/test_matrix.py).
DECORD_NO_REORDER = {"mpeg4"}
# Formats whose packet timestamps are real presentation times (AVI has none; MPEG-PS has gaps).
PTS_FORMATS = {"mov", "mp4", "matroska", "webm"}
# Formats with no presentation times at all: one chunk per frame interval (constant rate), and the decoder's output
# order is presentation order, but the timestamps FFmpeg attaches are decode-order guesses (wrong with B-frames).
CFR_FORMATS = {"avi"}
# Leading bytes of containers we recognise, to tell a damaged video from something that never was one.
_MAGIC = {b"ftyp": 4, b"\x1aE\xdf\xa3": 0, b"RIFF": 0, b"\x00\x00\x01\xba": 0, b"OggS": 0, b"FLV": 0, b"moov": 4,
          b"mdat": 4, b"free": 4, b"wide": 4}


@dataclass
class ProbeInfo:
    """What the container says about its first video stream.

    ``pts``: (F,) float64 seconds, the demuxed packets' presentation times sorted into presentation order (empty
    when the container has none, e.g. AVI); ``end_s``: end of the last frame's display (seconds, same clock).
    ``rotation``: clockwise display rotation in degrees from the display matrix.
    """

    format_name: str
    codec: str
    width: int
    height: int
    pix_fmt: str | None
    num_packets: int
    avg_fps: float
    duration_s: float
    rotation: int
    pts: np.ndarray = field(repr=False)
    end_s: float = float("nan")
    pts_ticks: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64), repr=False)  # pts in time_base
    end_tick: int = 0
    time_base: Fraction = Fraction(0)
    rate: Fraction = Fraction(0)  # average frame rate as a fraction (0 when unknown)
    rates: tuple = ()  # nominal rate candidates for the resampler's grid refinement
    pts_reliable: bool = False
    # pts ticks, ascending, of the key frames the decode may restart at: in decode order, every packet before one is
    # presented before it (so nothing presented at or after it is decoded earlier). Only with pts_reliable.
    restart_ticks: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64), repr=False)
    restart_pos: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64), repr=False)  # their byte offsets
    decord_ok: bool = False  # decord is known right for this container/codec and the timestamps are complete
    cfr_order: bool = False  # time of the n-th decoded frame is n / avg_fps (CFR_FORMATS)
    reordered: bool = False  # presentation order differs from decode order (B-frames)
    indexed_from: str = "demux"  # header: MP4/MOV sample tables, media data not read (header.py) | demux: every packet
    notes: list[str] = field(default_factory=list)
    # MP4/MOV only (else empty): what a decoder needs to decode a window without opening the container
    # (``packets.py``): the codec's extradata and every video packet in decode order — pts ticks, byte offset, size,
    # sync flag. A packet of these containers is exactly the bytes ``pos … pos + size`` of the file.
    extradata: bytes = field(default=b"", repr=False)
    pkt_pts: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64), repr=False)
    pkt_pos: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64), repr=False)
    pkt_size: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64), repr=False)
    pkt_key: np.ndarray = field(default_factory=lambda: np.empty(0, bool), repr=False)


def _looks_like_video_container(head: bytes) -> bool:
    return any(head[off : off + len(m)] == m for m, off in _MAGIC.items())


def _head(readable: Readable) -> bytes:
    if isinstance(readable, bytes):
        return bytes(readable[:16])
    with open_binary(readable) as f:
        return f.read(16)


def _mp4_cut(readable: Readable) -> str | None:
    """Walk the top-level MP4 boxes: say how the file was cut (a box running past the end, or no index), else None."""
    size = _file_size(readable)
    f = None if isinstance(readable, bytes) else open_binary(readable)
    try:
        pos, seen = 0, []
        while pos + 8 <= size:
            if f is not None:
                f.seek(pos)
                hdr = f.read(16)
            else:
                hdr = bytes(readable[pos : pos + 16])
            box, kind = int.from_bytes(hdr[:4], "big"), hdr[4:8]
            if box == 1 and len(hdr) >= 16:
                box = int.from_bytes(hdr[8:16], "big")
            if box < 8 and box != 0:
                return None  # not a box structure we understand
            seen.append(kind.decode("latin-1"))
            if box == 0 or pos + box > size:
                return (f"'{seen[-1]}' box at byte {pos} needs {box or 'the rest'} bytes, file has {size - pos}: "
                        f"the file was cut short") if box else None
            pos += box
        if "moov" not in seen:
            return f"no 'moov' index box among {seen}: the file was cut before its index was written"
        return None
    finally:
        if f is not None:
            f.close()


def _file_size(readable: Readable) -> int:
    return size_of(readable)


def probe(readable: Readable, header_only: bool = True, keep: int = KEEP_BYTES,
          align: int | None = None) -> ProbeInfo:
    """Probe ``readable`` (a path, the file's bytes or a remote object). Raises ``DecodeError`` for inputs that
    cannot be videos. ``header_only``: an MP4/MOV path or remote object is probed from its header, its media data
    past the first ``keep`` bytes (to an ``align`` boundary; default: a remote object's read block) read as zeros
    (``pipeline/decode/header.py``), with a full demux where that cannot be exact (``ProbeInfo.indexed_from``)."""
    import av

    head = _head(readable)
    view = None
    if header_only and not isinstance(readable, (bytes, bytearray)) and is_mp4(head):
        if align is None:
            align = readable.block_size if isinstance(readable, RemoteObject) else ALIGN_BYTES
        view = HeaderView.of(open_binary(readable), _file_size(readable), keep, align)
    try:
        container = av.open(view if view is not None else as_file(readable), mode="r")
    except av.FFmpegError as e:
        text = str(e)
        cut = _mp4_cut(readable) if head[4:8] == b"ftyp" else None
        if cut:
            raise DecodeError(TRUNCATED, f"{cut} ({text})") from None
        if _looks_like_video_container(head):
            raise DecodeError(CORRUPT, f"container header recognised but unreadable: {text}") from None
        raise DecodeError(NOT_A_VIDEO, f"no known container format: {text}") from None
    with container:
        fmt = container.format.name
        if not container.streams.video:
            kinds = sorted({s.type for s in container.streams}) or ["none"]
            raise DecodeError(NOT_A_VIDEO, f"{fmt} has no video stream (streams: {', '.join(kinds)})")
        stream = container.streams.video[0]
        ctx = stream.codec_context
        codec = ctx.name if ctx is not None else "none"
        if ctx is None or ctx.codec is None or not ctx.codec.is_decoder:
            raise DecodeError(UNSUPPORTED_CODEC, f"no decoder for video codec {codec!r} in {fmt}")
        width, height = ctx.width, ctx.height
        if view is not None:
            entries = stream.index_entries
            if (not len(entries) or entries[0].pos + entries[0].size > view.real_end or ctx.format is None
                    or not width):  # the first frame is not in the real bytes: demux the real file
                container.close()
                return probe(readable, header_only=False)
        tb = float(stream.time_base) if stream.time_base else 0.0
        pts, durs, n, demux_error, rotation = [], [], 0, None, None
        keys, pos, sizes = [], [], []  # per packet, decode order: key flag (demux) / byte offset / size
        # through the header view FFmpeg's H.264/HEVC parser reads our zeroed packets and logs two errors per packet
        # ("Invalid NAL unit size", 444 lines for a 20-s clip): they are ours, not the file's, so they are captured
        quiet = av.logging.Capture() if view is not None else contextlib.nullcontext()
        try:
            with quiet:
                for pkt in container.demux(stream):
                    if pkt.size == 0:
                        continue
                    n += 1
                    pts.append(pkt.pts)
                    keys.append(pkt.is_keyframe)
                    pos.append(-1 if pkt.pos is None else pkt.pos)
                    sizes.append(pkt.size)
                    durs.append(pkt.duration or 0)
                    if rotation is None and (view is None or pkt.pos + pkt.size <= view.real_end):
                        rotation = _rotation(stream, pkt)  # decode only until the first frame shows its display matrix
        except av.FFmpegError as e:
            demux_error = str(e)
        if view is not None:
            # zeroed packets carry no key flag: take the header's sync samples (the index entries, complete after
            # the demux: fragmented files add theirs as their `moof` boxes are read)
            sync = {e.pos: e.is_keyframe for e in stream.index_entries}
            if (rotation is None and not demux_error) or any(p not in sync for p in pos):
                container.close()  # no frame out of the real bytes, or packets the header does not list
                return probe(readable, header_only=False)
            keys = [sync[p] for p in pos]
        restarts, restart_pos = _restarts(pts, keys, pos)
        names = set(fmt.split(","))
        info = ProbeInfo(
            format_name=fmt, codec=codec, width=width, height=height,
            pix_fmt=ctx.format.name if ctx.format is not None else None, num_packets=n,
            avg_fps=float(stream.average_rate or stream.guessed_rate or 0.0),
            duration_s=float(stream.duration * tb) if stream.duration else float(container.duration or 0) / 1e6,
            rotation=rotation or 0, pts=np.empty(0), indexed_from="header" if view is not None else "demux",
        )
        if n == 0:
            raise DecodeError(TRUNCATED if demux_error else CORRUPT,
                              f"{fmt}/{codec}: no video packets" + (f" ({demux_error})" if demux_error else ""))
        _check_complete(stream, readable, info, demux_error)
        rate = stream.average_rate or stream.guessed_rate
        info.rate = Fraction(rate) if rate else Fraction(0)
        info.rates = tuple(Fraction(r) for r in (stream.guessed_rate, stream.base_rate, stream.average_rate) if r)
        info.time_base = Fraction(stream.time_base) if stream.time_base else Fraction(0)
        if all(p is not None for p in pts) and len(set(pts)) == n and names & PTS_FORMATS and tb > 0:
            ticks = np.sort(np.asarray(pts, dtype=np.int64))
            last_dur = durs[int(np.argmax(pts))] or (round(1 / (info.rate * info.time_base)) if info.rate else 1)
            info.pts_ticks, info.end_tick, info.pts_reliable = ticks, int(ticks[-1]) + int(last_dur), True
            info.pts, info.end_s = ticks * tb, (int(ticks[-1]) + int(last_dur)) * tb
            info.restart_ticks, info.restart_pos = restarts, restart_pos
            if "mov" in names and min(pos) >= 0:
                info.extradata = bytes(ctx.extradata or b"")
                info.pkt_pts, info.pkt_pos = np.asarray(pts, np.int64), np.asarray(pos, np.int64)
                info.pkt_size, info.pkt_key = np.asarray(sizes, np.int64), np.asarray(keys, bool)
        info.cfr_order = bool(names & CFR_FORMATS) and info.avg_fps > 0
        info.reordered = info.pts_reliable and bool(np.any(np.diff(np.asarray(pts, dtype=np.int64)) < 0))
        if (info.pts_reliable and names & DECORD_FORMATS and codec in DECORD_CODECS
                and not (info.reordered and codec in DECORD_NO_REORDER)):
            info.decord_ok = True
        if info.pts_reliable:  # the video's own extent, not the container's (an audio track may run longer)
            info.duration_s = info.end_s - info.pts[0]
            _check_declared_duration(container, stream, info)
        return info


def _restarts(pts: list, keys: list, pos: list) -> tuple[np.ndarray, np.ndarray]:
    """Pts ticks (ascending) and byte offsets of the clean key frames: key frames, in decode order, presented after
    every packet before them (so nothing presented at or after one is decoded earlier)."""
    ticks, offsets, latest = [], [], None
    for p, k, o in zip(pts, keys, pos):
        if p is None:
            continue
        if k and (latest is None or p > latest):
            ticks.append(p)
            offsets.append(o)
        latest = p if latest is None else max(latest, p)
    return np.asarray(ticks, dtype=np.int64), np.asarray(offsets, dtype=np.int64)


def _declared_video_duration(container, stream) -> float | None:
    """Seconds the header promises for the video stream: the stream's own duration, Matroska's per-track
    `DURATION` tag (written next to the header, so it survives a cut file), or the container's duration when the
    video is its only stream (otherwise an audio track may legitimately run longer). None when nothing is declared."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    tag = (stream.metadata or {}).get("DURATION") or (stream.metadata or {}).get("duration")
    if tag:
        try:
            h, m, sec = tag.split(":")
            return int(h) * 3600 + int(m) * 60 + float(sec)
        except ValueError:
            pass
    if container.duration and len(container.streams) == 1:
        return container.duration / 1e6
    return None


def _check_declared_duration(container, stream, info: ProbeInfo) -> None:
    """Raise ``truncated`` when the packets end well before the duration the header declares.

    Index-less containers (Matroska/WebM) keep demuxing a cut file without an error and simply run out of packets;
    their header still states the full duration. Tolerance: 0.5 s or 2 % of the declared length, far above the one
    frame by which container rounding differs from the packet extent.
    """
    declared = _declared_video_duration(container, stream)
    if declared is None or declared <= 0:
        return
    missing = declared - info.duration_s
    if missing > max(0.5, 0.02 * declared):
        raise DecodeError(TRUNCATED, f"{info.format_name}: packets end at {info.duration_s:.2f} s but the header "
                                     f"declares {declared:.2f} s of video ({info.num_packets} packets readable)")


def _check_complete(stream, readable: Readable, info: ProbeInfo, demux_error: str | None) -> None:
    """Raise ``truncated`` when the index promises bytes or frames the file does not hold."""
    size = _file_size(readable)
    entries = stream.index_entries
    if len(entries):
        last = max(entries[i].pos + entries[i].size for i in range(len(entries)))
        if last > size:
            raise DecodeError(TRUNCATED, f"index describes {last} bytes of video data but the file has {size}; "
                                         f"{info.num_packets} of {len(entries)} frames readable")
        if info.num_packets < len(entries):
            raise DecodeError(TRUNCATED, f"{info.num_packets} of {len(entries)} indexed frames readable")
    if demux_error:
        raise DecodeError(CORRUPT, f"demuxing stopped after {info.num_packets} packets: {demux_error}")


def _rotation(stream, pkt) -> int | None:
    """Clockwise display rotation from the first frame this packet yields (None: no frame yet)."""
    import av

    try:
        for frame in stream.decode(pkt):
            return int(round(-frame.rotation / 90.0)) % 4 * 90
    except av.FFmpegError:
        return None
    return None
