"""The embedded default corpus: a few short synthetic clips written locally, so `python jobs/tokenize_corpus.py` runs
with no arguments and no downloads.

Clips come from `pipeline.synth.write_synthetic_video` (H.264 MP4, pixels encode the frame number, so
`jobs/reconstruct.py` previews show which source frame every token window came from). Generation is idempotent: an
existing clip with the expected name is reused, so reruns of the demo resume instead of re-tokenizing new files.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pipeline.synth import write_synthetic_video

log = logging.getLogger(__name__)


def make_sample_corpus(folder: str | Path, num_clips: int = 4, seconds: float = 6.5, fps: float = 24.0,
                       width: int = 160, height: int = 120) -> Path:
    """Write `num_clips` clips of `seconds` at `fps` (sizes vary a little so resizing is exercised); returns folder."""
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    made = 0
    for i in range(num_clips):
        w, h = width + 16 * (i % 3), height + 8 * (i % 2)  # a few aspect ratios: short-side resize + centre crop
        path = folder / f"clip_{i:03d}_{w}x{h}_{fps:g}fps.mp4"
        if path.exists() and path.stat().st_size > 0:
            continue
        tmp = path.with_name(path.name + ".part")  # not a video extension: never listed, even after a crash
        write_synthetic_video(tmp, num_frames=max(1, round(seconds * fps)), fps=fps, size=(w, h), container="mp4",
                              gop=2 * round(fps))
        tmp.replace(path)  # a half-written clip must never be listed as input
        made += 1
    log.info("sample corpus: %d clips in %s (%d new)", num_clips, folder, made)
    return folder
