"""Export a VidTok checkpoint: official-layout .ckpt + .safetensors, and a diffusers AutoencoderVidTok folder.

    python jobs/export.py preset=vidtok_fsq_causal_488_32768_v1_1 checkpoint=/ckpt/x.ckpt output=/out/x
    python jobs/export.py preset=vidtok_kl_causal_488_4chn checkpoint=/ckpt/y.ckpt output=/out/y   # v1.0: no diffusers/

v1.0 causal checkpoints get only the official-layout files (docs/interop.md says why).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pipeline.cli import run_job
from pipeline.config import ConfigError, to_yaml
from pipeline.job_record import OutputClaim
from pipeline.storage import OutputLayout, join, write_bytes
from vidtok.export import DiffusersExportRefused, ExportConfig, run_export


def main(cfg: ExportConfig) -> int:
    # the output folder is this export's alone: a folder of the user's is refused, never written into
    claim = OutputClaim(OutputLayout(cfg.output), "export", {"preset": cfg.preset}, cfg.checkpoint, append=True,
                        data=("",), legacy="export_config.yaml").check()
    claim.record()  # before the files, so an export that fails half-way leaves a folder the next try accepts
    try:
        results = run_export(cfg)
    except (DiffusersExportRefused, ValueError, FileNotFoundError) as e:
        # unknown preset, missing checkpoint, checkpoint of another preset, diffusers=require on a v1.0 model
        raise ConfigError(f"export failed: {e}") from None
    write_bytes(join(str(Path(cfg.output)), "export_config.yaml"), to_yaml(cfg).encode())
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(run_job(ExportConfig, None, main, __doc__))
