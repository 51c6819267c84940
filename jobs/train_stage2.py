"""Stage 2 of VidTok training (decoder only, encoder frozen, 256x256 at paper scale) on Ray Train.

    python jobs/train_stage2.py --help       # usage, and every key with its default and meaning
    python jobs/train_stage2.py key=value ...

The job lives in the library (`pipeline/entrypoints.py`, also the console command); this file is what
`ray job submit --working-dir . -- python jobs/train_stage2.py ...` runs.
"""

import sys

from pipeline.entrypoints import train_stage2

if __name__ == "__main__":
    sys.exit(train_stage2())
