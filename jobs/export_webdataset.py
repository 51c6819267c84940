"""Export token shards as WebDataset tar shards.

    python jobs/export_webdataset.py --help       # usage, and every key with its default and meaning
    python jobs/export_webdataset.py key=value ...

The job lives in the library (`pipeline/entrypoints.py`, also the console command); this file is what
`ray job submit --working-dir . -- python jobs/export_webdataset.py ...` runs.
"""

import sys

from pipeline.entrypoints import export_webdataset

if __name__ == "__main__":
    sys.exit(export_webdataset())
