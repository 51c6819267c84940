"""The tokenize job: a video corpus -> Parquet token shards, exactly once (`jobs/tokenize_corpus.py`).

    config       TokenizeJobConfig (composes pipeline.decode.DecodeConfig and the shared sections)
    schema       every table of the job: plan, windows, encoded, tokens, written, status
    commit       exactly-once naming, resume state, the plan
    stages       the Ray Data stages and `build_dataset`
    run          the driver: `run_tokenize`
    reconstruct  tokens back to pixels (`jobs/reconstruct.py`)
"""
