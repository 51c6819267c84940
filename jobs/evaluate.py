"""Reconstruction quality of a VidTok checkpoint (PSNR, SSIM, LPIPS, FVD) by the paper's protocol.

    python jobs/evaluate.py --help       # usage, and every key with its default and meaning
    python jobs/evaluate.py key=value ...

The job lives in the library (`pipeline/entrypoints.py`, also the console command); this file is what
`ray job submit --working-dir . -- python jobs/evaluate.py ...` runs.
"""

import sys

from pipeline.entrypoints import evaluate

if __name__ == "__main__":
    sys.exit(evaluate())
