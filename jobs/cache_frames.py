"""Job: decode a video corpus once into a frames cache that training reads (`data.frames=<output>`).

    python jobs/cache_frames.py input=s3://b/videos output=s3://b/frames256           # zstd raw 256², 3 FPS
    python jobs/cache_frames.py input=s3://b/videos output=s3://b/frames256 frames.format=jpeg
    ray job submit --working-dir . -- python jobs/cache_frames.py input=... output=...

Every 3 FPS sample of each video at `frames.size`² (the decode stage's spatial policy), in Parquet shards with an
index (pipeline/frames/store.py). Rerunning the same command resumes; a finished cache does nothing. Exit codes
(pipeline/errors.py): 0 complete, 2 configuration, 3 videos left after transient failures (re-run). docs/frames_cache.md.
"""

from __future__ import annotations

import json
import sys

from pipeline.cli import run_job
from pipeline.errors import INCOMPLETE
from pipeline.frames.config import CacheFramesJobConfig


def main(cfg: CacheFramesJobConfig) -> int:
    from pipeline.frames.run import run_cache_frames

    summary = run_cache_frames(cfg)
    print(json.dumps(summary, indent=2, sort_keys=True))
    if summary["left_for_next_run"]:
        print(f"INCOMPLETE: {summary['left_for_next_run']} videos left after transient failures; re-running the "
              "same command retries them", file=sys.stderr)
        return INCOMPLETE
    return 0


if __name__ == "__main__":
    sys.exit(run_job(CacheFramesJobConfig, None, main, __doc__))
