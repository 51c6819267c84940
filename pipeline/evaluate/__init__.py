"""Evaluation: `metrics` (the library training validation also uses) and `run` (the job, `jobs/evaluate.py`)."""
