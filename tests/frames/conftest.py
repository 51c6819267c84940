"""Small generated videos for the frames-cache tests."""

from __future__ import annotations

import pytest

from pipeline.decode.synth import write_synthetic_video


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> list[str]:
    """Three clips: 8 s (24 samples at 3 FPS), 12 s (36 samples, GOP 48 with B-frames), 3 s (9 samples: shorter
    than a 17-frame window, so training pads it)."""
    folder = tmp_path_factory.mktemp("frames_videos")
    out = []
    for name, seconds, gop in (("a", 8, 24), ("b", 12, 48), ("c", 3, 12)):
        path = folder / f"{name}.mp4"
        write_synthetic_video(path, seconds * 24, 24, size=(160, 120), gop=gop, bframes=2)
        out.append(str(path))
    return out
