"""Decode windows of an MP4/MOV straight from its packets: no container to open, only the windows' bytes read.

A training clip is a few seconds of a video (``pipeline/train/data.py``). Opening the container for it would read
the header again (for a long video as large as the clip), let FFmpeg read the first packets to find the stream's
parameters, and fetch whole read blocks around the clip. The probe already knows what a decoder needs
(``ProbeInfo.extradata`` and the packet table ``pkt_pts / pkt_pos / pkt_size / pkt_key``: every video packet in
decode order, from the `moov` sample tables), and the video index stores it (``index.py``), so each run of wanted
frames is decoded by sending its packets to a bare codec context:

* from the clean key frame at or before the run's first frame (``ProbeInfo.restart_ticks``: nothing presented at or
  after it is decoded from an earlier packet) to the last packet, in decode order, of any frame of the run; then the
  decoder is drained. The frames are picked exactly as on the container path (``backends._run_frames``: the same
  packets, the same skipping of non-reference frames nothing samples).
* the bytes come by ranged reads of that span only, ``chunk`` bytes at most per read, as the packets are needed
  (``source.read_range``: for a remote object one GET each, outside the block cache, which would round the span out
  to whole blocks). So the store serves the span from the key frame to the last packet once (audio interleaved in
  it included) and nothing else.

Exact: an MP4/MOV packet of these codecs (``PACKET_CODECS``) is the file's bytes ``pos … pos + size`` as FFmpeg's mov
demuxer hands it over (no parser in between), the codec context gets the stream's extradata, so the decoder sees
what it sees on the container path and makes the same frames (``tests/decode/test_packets.py`` compares every
frame with the container path's). The display rotation, which the container attaches to frames from its display
matrix, is taken from the probe (``ProbeInfo.rotation``).
"""

from __future__ import annotations

import functools
import types
from typing import Iterator, Sequence

import numpy as np

from .backends import _run_frames, _sampled
from .probe import ProbeInfo
from .source import Readable, read_range
from .spatial import Size
from .status import CORRUPT, DecodeError

# Codecs whose MP4/MOV packets decode to the container path's frames from a bare context (tests/decode/
# test_packets.py). Not MPEG-4 part 2 (its frames differ from the container path's by up to 243 levels: the
# decoder takes more than the extradata from the stream) nor AV1 through libdav1d (frames held back); those, and
# other containers, decode windows through the container (``backends.iter_pyav``, seeking), as before.
PACKET_CODECS = {"h264", "hevc"}
CHUNK_BYTES = 1 << 20  # largest ranged read of a span (memory: one chunk, or one packet if larger)


def usable(info: ProbeInfo) -> bool:
    """Whether ``info`` carries a packet table this path can decode from (MP4/MOV, a codec of ``PACKET_CODECS``)."""
    return bool(len(info.pkt_pos)) and info.pts_reliable and info.codec in PACKET_CODECS and \
        len(info.pkt_pos) == len(info.pts_ticks)


def spans(info: ProbeInfo, runs: Sequence[np.ndarray]) -> list[tuple[int, int]]:
    """Per run: ``(first, last)`` packet (decode order) to send: the clean key frame at or before its first frame,
    and the last of its frames' packets."""
    order = np.argsort(info.pkt_pts, kind="stable")  # presentation index -> decode index
    out = []
    for run in runs:
        r = int(np.searchsorted(info.restart_ticks, info.pts_ticks[run[0]], side="right")) - 1
        first = int(order[np.searchsorted(info.pts_ticks, info.restart_ticks[r])]) if r >= 0 else 0
        out.append((first, int(np.max(order[np.asarray(run, np.int64)]))))
    return out


def byte_range(info: ProbeInfo, first: int, last: int) -> tuple[int, int]:
    """``(start, end)`` of the bytes holding packets ``first … last``."""
    pos, size = info.pkt_pos[first : last + 1], info.pkt_size[first : last + 1]
    return int(pos.min()), int((pos + size).max())


class _Span:
    """Packet bytes of one byte range, fetched forward in reads of at most ``chunk`` bytes."""

    def __init__(self, readable: Readable, start: int, end: int, chunk: int):
        self.readable, self.end, self.chunk = readable, end, chunk
        self.base, self.data = start, b""

    def get(self, pos: int, size: int) -> bytes:
        have = self.base + len(self.data)
        if not (self.base <= pos and pos + size <= have):
            keep = self.data[pos - self.base :] if self.base <= pos < have else b""  # read already: not again
            start = pos + len(keep)
            n = max(pos + size - start, min(self.chunk, self.end - start))
            self.base, self.data = pos, keep + read_range(self.readable, start, n)
            if len(self.data) < size:
                raise DecodeError(CORRUPT, f"packet at byte {pos} ({size} bytes) runs past the end of the file")
        return self.data[pos - self.base : pos - self.base + size]


def _packets(info: ProbeInfo, span: _Span, first: int, last: int):
    import av

    for j in range(first, last + 1):
        pkt = av.Packet(span.get(int(info.pkt_pos[j]), int(info.pkt_size[j])))
        pkt.pts = pkt.dts = int(info.pkt_pts[j])  # dts is not used by decoders; pts tags the frame
        pkt.is_keyframe = bool(info.pkt_key[j])
        yield pkt


def iter_packets(readable: Readable, info: ProbeInfo, runs: Sequence[np.ndarray], size: Size, threads: int = 1,
                 chunk: int = CHUNK_BYTES) -> Iterator[tuple[int, np.ndarray]]:
    """``backends.iter_pyav(..., seek=True)`` for a ``usable`` ``info``, from the packets: ``(index, frame)`` with
    ``frame`` (h, w, 3) uint8 of each run's frames, in increasing index order."""
    import av

    ctx = av.CodecContext.create(info.codec, "r")
    if info.extradata:
        ctx.extradata = info.extradata
    ctx.width, ctx.height = info.width, info.height
    ctx.thread_count, ctx.thread_type = threads, "AUTO"
    stream = types.SimpleNamespace(codec_context=ctx, decode=ctx.decode)  # what _run_frames uses of a stream
    sample = functools.partial(_sampled, turn=-info.rotation)  # frame.rotation's sense (counter-clockwise)
    runs = [r for r in runs if len(r)]
    try:
        for run, (first, last) in zip(runs, spans(info, runs)):
            ctx.flush_buffers()  # a clean start, as after a seek (also ends the drained state of the last run)
            span = _Span(readable, *byte_range(info, first, last), chunk)
            yield from _run_frames(_packets(info, span, first, last), stream, info, run, size, True, sample)
    except av.FFmpegError as e:
        raise DecodeError(CORRUPT, f"{info.format_name}/{info.codec}: decoding failed: {e}") from None
