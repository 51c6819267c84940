"""Export a VidTok checkpoint: official layout + a diffusers folder.

    python jobs/export.py --help       # usage, and every key with its default and meaning
    python jobs/export.py key=value ...

The job lives in the library (`pipeline/entrypoints.py`, also the console command); this file is what
`ray job submit --working-dir . -- python jobs/export.py ...` runs.
"""

import sys

from pipeline.entrypoints import export

if __name__ == "__main__":
    sys.exit(export())
