"""Decode chosen token windows back to video (mp4 + PNG grid per clip).

    python jobs/reconstruct.py --help       # usage, and every key with its default and meaning
    python jobs/reconstruct.py key=value ...

The job lives in the library (`pipeline/entrypoints.py`, also the console command); this file is what
`ray job submit --working-dir . -- python jobs/reconstruct.py ...` runs.
"""

import sys

from pipeline.entrypoints import reconstruct

if __name__ == "__main__":
    sys.exit(reconstruct())
