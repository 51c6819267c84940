"""Main job: tokenize a video corpus into Parquet shards with Ray Data (exactly once, resumable).

    python jobs/tokenize_corpus.py                                   # embedded default: sample corpus, tiny preset
    python jobs/tokenize_corpus.py input=s3://b/videos output=s3://b/tokens preset=vidtok_fsq_causal_488_32768 \
        checkpoint=/ckpt/vidtok_fsq_causal_488_32768.ckpt tokenizer.max_actors=8
    ray job submit --working-dir . -- python jobs/tokenize_corpus.py input=... output=...

Config: jobs/configs/tokenize_corpus.yaml + key=value overrides (schema: pipeline/tokenize_config.py). Rerunning the
same command resumes an interrupted run; rerunning a finished one does nothing. Output layout: docs/tokenize.md.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # `ray job submit --working-dir .` runs this file without installing the package

from pipeline.config import ConfigError, load_config, split_args, to_yaml  # noqa: E402
from pipeline.tokenize_config import TokenizeJobConfig  # noqa: E402

DEFAULT_CONFIG = REPO / "jobs" / "configs" / "tokenize_corpus.yaml"


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        path, overrides = split_args(argv)
        cfg = load_config(TokenizeJobConfig, path or DEFAULT_CONFIG, overrides)
    except (ConfigError, ValueError) as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    logging.getLogger(__name__).info("resolved config:\n%s", to_yaml(cfg))

    from pipeline.tokenize_run import run_tokenize

    try:
        summary = run_tokenize(cfg)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    if summary.get("nothing_to_do"):
        print(f"nothing to do: {cfg.output} is complete ({summary.get('windows_total', '?')} windows); "
              "new inputs under the same input= would be picked up")
    else:
        print("summary: " + json.dumps(summary, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
