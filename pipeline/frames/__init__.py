"""The frames cache: every 3 FPS frame of each video, decoded once at the training size, so training
reads windows instead of decoding source videos. Layout and exactly-once rules: `pipeline/frames/store.py`;
building it: `pipeline/frames/build.py` (per video, pure) and `pipeline/frames/run.py` (the Ray Data job);
its index at 10^6 videos (hash buckets): `pipeline/frames/index.py`; reading it: `pipeline/frames/read.py`; the
stored frame format: `pipeline/frames/codec.py`; docs/frames_cache.md."""
