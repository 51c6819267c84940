"""Main job: a video corpus -> Parquet token shards (Ray Data, exactly once, resumable).

    python jobs/tokenize_corpus.py --help       # usage, and every key with its default and meaning
    python jobs/tokenize_corpus.py key=value ...

The job lives in the library (`pipeline/entrypoints.py`, also the console command); this file is what
`ray job submit --working-dir . -- python jobs/tokenize_corpus.py ...` runs.
"""

import sys

from pipeline.entrypoints import tokenize

if __name__ == "__main__":
    sys.exit(tokenize())
