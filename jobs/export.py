"""Export a VidTok checkpoint: official-layout .ckpt + .safetensors, and a diffusers AutoencoderVidTok folder.

    python jobs/export.py preset=vidtok_fsq_causal_488_32768_v1_1 checkpoint=/ckpt/x.ckpt output=/out/x
    python jobs/export.py preset=vidtok_kl_causal_488_4chn checkpoint=/ckpt/y.ckpt output=/out/y   # v1.0: no diffusers/

Config keys: vidtok/export.py `ExportConfig` (preset, checkpoint, output, name, diffusers=auto|require|skip,
allow_unsafe_pickle). v1.0 causal checkpoints get only the official-layout files (docs/interop.md says why).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.config import ConfigError, load_config, split_args, to_yaml  # noqa: E402
from vidtok.export import DiffusersExportRefused, ExportConfig, run_export  # noqa: E402


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        path, overrides = split_args(argv)
        cfg = load_config(ExportConfig, path, overrides)
    except (ConfigError, ValueError) as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    try:
        results = run_export(cfg)
    except (DiffusersExportRefused, ValueError, FileNotFoundError) as e:
        # unknown preset, missing checkpoint, checkpoint of another preset, diffusers=require on a v1.0 model
        print(f"export failed: {e}", file=sys.stderr)
        return 2
    Path(cfg.output, "export_config.yaml").write_text(to_yaml(cfg))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
