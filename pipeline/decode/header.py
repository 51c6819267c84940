"""Probe an MP4/MOV from its header: the `moov` sample tables, not the media data.

An MP4/MOV file states every sample's decode time (`stts`), composition offset (`ctts`, B-frame presentation order),
size and byte offset (`stsz`, `stco`/`co64`, `stsc`) and the sync samples (`stss`) in its `moov` box, so FFmpeg's
mov demuxer takes every packet's timestamps, size and position from the header and only copies the packet's bytes
from the `mdat` box. :class:`HeaderView` exploits that: a file object over the source that serves the `mdat`
payload as zeros, past its first ``keep`` bytes. The probe demuxes through it as it always did (the same FFmpeg code
computes the same presentation times, edit lists included), but the store serves only the header boxes and the first
read block of media (``keep``: at least 1 MiB, to the end of its block), where the first frames are (FFmpeg decodes
the first frame for the pixel format, the probe for the display matrix). A long MP4 is indexed from its first block
and its `moov` box: 7 MB of a 2-minute 112 MB 720p file (``benchmarks/read_once.py``).

What the zeros change, and how the probe deals with it (``pipeline/decode/probe.py``):

* key frames: FFmpeg's H.264 parser flags packets by their content, so a zeroed packet is never a key frame. The
  header's own key frames (`stss`, FFmpeg's index entries: ``VideoStream.index_entries``) are used instead; on the
  decode test matrix they are the same frames (``tests/decode/test_header.py``);
* the first frame must lie in the real bytes: when the first video packet ends past them (a huge first frame, audio
  first), or the stream's pixel format stays unknown, the probe demuxes the real file instead;
* truncation is judged as before: the index entries promise bytes past the object's end (``truncated``), or the
  `moov` box is missing or cut (FFmpeg fails to open; ``probe._mp4_cut`` says how).

Other containers are demuxed as before: AVI and MPEG-PS have no sample tables, and Matroska/WebM's `Cues` list
only key frames while the 3 FPS rule needs every frame's time, which only the cluster headers spread through the
file hold; the block cache (``source.BlockCache``) makes that demux and the decoder's read share one fetch.
"""

from __future__ import annotations

import bisect
from typing import Iterator

from pipeline.decode.source import RangeFile

KEEP_BYTES = 1 << 20  # real bytes kept at the start of the media data (the first frames), at least
ALIGN_BYTES = 4 << 20  # ... up to the end of their read block (source.BLOCK_BYTES): that block is fetched anyway
MP4_BRANDS = (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip")  # a leading box of an MP4/MOV file


def mp4_boxes(f, size: int) -> Iterator[tuple[int, bytes, int, int]]:
    """Top-level boxes of an MP4/MOV file object: ``(offset, kind, header bytes, box bytes)``; a box whose size runs
    past ``size`` is yielded as declared (the caller judges it). Stops at a size field it cannot parse."""
    pos = 0
    while pos + 8 <= size:
        f.seek(pos)
        hdr = f.read(16)
        if len(hdr) < 8:
            return
        box, kind, hlen = int.from_bytes(hdr[:4], "big"), hdr[4:8], 8
        if box == 1 and len(hdr) >= 16:
            box, hlen = int.from_bytes(hdr[8:16], "big"), 16
        elif box == 0:  # to the end of the file
            box = size - pos
        if box < hlen:
            return
        yield pos, kind, hlen, box
        pos += box


def is_mp4(head: bytes) -> bool:
    return head[4:8] in MP4_BRANDS


class HeaderView(RangeFile):
    """A seekable binary file over ``f`` (``size`` bytes) that reads the byte ranges in ``holes`` as zeros."""

    def __init__(self, f, size: int, holes: list[tuple[int, int]]):
        super().__init__(size)
        self.f, self.holes = f, sorted(holes)
        self.starts = [h[0] for h in self.holes]
        self.real_end = self.starts[0] if holes else size  # bytes before the first hole are all real

    @classmethod
    def of(cls, f, size: int, keep: int = KEEP_BYTES, align: int = ALIGN_BYTES) -> "HeaderView":
        """The view of an MP4/MOV file object: every `mdat` payload is a hole, after the first one's ``keep`` bytes
        (rounded up to a multiple of ``align`` bytes of the file: the rest of a read block that is fetched anyway)."""
        holes, first = [], True
        for pos, kind, hlen, box in mp4_boxes(f, size):
            if kind == b"mdat":
                start = pos + hlen
                if first and keep > 0:
                    start = -(-(start + keep) // align) * align
                first = False
                if start < min(pos + box, size):
                    holes.append((start, min(pos + box, size)))
        return cls(f, size, holes)

    def close(self) -> None:
        if not self.closed:
            self.f.close()
        super().close()

    def pread(self, offset: int, n: int) -> bytes:
        end = min(self.size, offset + n)
        parts, p = [], offset
        while p < end:
            i = bisect.bisect_right(self.starts, p) - 1  # the last hole starting at or before p
            if i >= 0 and p < self.holes[i][1]:
                q = min(end, self.holes[i][1])
                parts.append(bytes(q - p))
            else:
                q = min(self.starts[i + 1], end) if i + 1 < len(self.starts) else end
                self.f.seek(p)
                got = self.f.read(q - p)
                parts.append(got)
                if len(got) < q - p:  # the object ended early
                    p += len(got)
                    break
            p = q
        return b"".join(parts)
