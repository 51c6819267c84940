"""Stage 1 of VidTok training (full model, 128x128 at paper scale) on Ray Train.

    python jobs/train_stage1.py --help       # usage, and every key with its default and meaning
    python jobs/train_stage1.py key=value ...

The job lives in the library (`pipeline/entrypoints.py`, also the console command); this file is what
`ray job submit --working-dir . -- python jobs/train_stage1.py ...` runs.
"""

import sys

from pipeline.entrypoints import train_stage1

if __name__ == "__main__":
    sys.exit(train_stage1())
