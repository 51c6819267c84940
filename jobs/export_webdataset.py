"""Export token shards as WebDataset tar shards: one sample per window (`<clip_id>.tokens.npy` + `<clip_id>.json`).

    python jobs/export_webdataset.py                                    # out/tokens_demo -> out/tokens_demo/webdataset
    python jobs/export_webdataset.py tokens=s3://b/tokens output=s3://b/tokens-wds

One tar per token shard, named after it and skipped when it exists: re-running after a resumed tokenize run exports
only the new shards, never a sample twice. Format and rules: pipeline/tokenize/webdataset.py.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pipeline.cli import run_job
from pipeline.tokenize.webdataset import WebDatasetExportConfig

DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "export_webdataset.yaml"


def main(cfg: WebDatasetExportConfig) -> int:
    from pipeline.tokenize.webdataset import export_webdataset

    print(json.dumps(export_webdataset(cfg), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(run_job(WebDatasetExportConfig, DEFAULT_CONFIG, main, __doc__))
