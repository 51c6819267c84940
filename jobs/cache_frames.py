"""Decode a video corpus once into the frames cache that training reads.

    python jobs/cache_frames.py --help       # usage, and every key with its default and meaning
    python jobs/cache_frames.py key=value ...

The job lives in the library (`pipeline/entrypoints.py`, also the console command); this file is what
`ray job submit --working-dir . -- python jobs/cache_frames.py ...` runs.
"""

import sys

from pipeline.entrypoints import cache_frames

if __name__ == "__main__":
    sys.exit(cache_frames())
