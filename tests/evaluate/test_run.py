"""The evaluation job: paper-protocol metrics over a folder of videos, one FVD over the whole set, and the same
per-video table and aggregate whether it runs in one process or spread over Ray actors."""

from __future__ import annotations

import json

import pytest
import torch

from pipeline.config import load_config
from pipeline.evaluate.run import EvaluateConfig, run_evaluation
from tests.tokenize.helpers import make_corpus
from vidtok import VidTok

PRESET = "vidtok_fsq_causal_488_32768_tiny"


class TinyI3D(torch.nn.Module):
    """An I3D-shaped feature extractor for tests: (B, 3, T, H, W) in [-1, 1] -> (B, 400), random weights."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv3d(3, 8, 3, stride=2)
        self.fc = torch.nn.Linear(8, 400)

    def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = True, return_features: bool = True):
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3, 4)))


@pytest.fixture(scope="module")
def eval_inputs(tmp_path_factory):
    """Three short clips, a random-weight checkpoint in the official layout and a scripted I3D."""
    root = tmp_path_factory.mktemp("eval")
    make_corpus(root / "videos", clips=[(1.2, 24.0), (1.0, 25.0), (0.8, 30.0)])
    torch.manual_seed(0)
    ckpt = root / "tiny.ckpt"
    torch.save({"state_dict": VidTok.from_config(PRESET).official_state_dict()}, ckpt)
    torch.manual_seed(1)
    i3d = root / "i3d.pt"
    torch.jit.script(TinyI3D()).save(str(i3d))
    return root, ckpt, i3d


def _cfg(root, ckpt, i3d, *extra) -> EvaluateConfig:
    return load_config(EvaluateConfig, None, [
        f"input={root / 'videos'}", f"checkpoint={ckpt}", f"preset={PRESET}", f"i3d_path={i3d}", "lpips=false",
        "decode.fps=30", "decode.size=32", "decode.tail=pad", "batch_size=2", *extra])


def test_evaluate_one_fvd_over_the_set(eval_inputs, tmp_path):
    """Per-video PSNR/SSIM without FVD; one FVD over every clip of the set; frames weighted exactly."""
    root, ckpt, i3d = eval_inputs
    out = tmp_path / "m.json"
    s = run_evaluation(_cfg(root, ckpt, i3d, f"output={out}"))
    assert s["videos"] == 3 and not s["skipped"]
    assert all("fvd" not in v for v in s["per_video"].values())
    clips = sum(v["frames"] for v in s["per_video"].values()) / 17
    assert s["fvd_clips"] == clips and s["fvd"] == s["fvd"] and s["fvd"] >= 0  # finite, over all clips
    frames = sum(v["frames"] for v in s["per_video"].values())
    psnr = sum(v["psnr"] * v["frames"] for v in s["per_video"].values()) / frames
    assert abs(s["psnr"] - psnr) < 1e-9 and s["frames"] == frames
    assert json.loads(out.read_text())["fvd"] == s["fvd"]


@pytest.mark.slow
def test_evaluate_on_ray_actors_matches_one_process(eval_inputs, ray_local):
    """num_workers=2 (Ray actors) gives the same per-video table and aggregate as one process, exactly."""
    root, ckpt, i3d = eval_inputs
    one = run_evaluation(_cfg(root, ckpt, i3d))
    two = run_evaluation(_cfg(root, ckpt, i3d, "num_workers=2"))
    assert two["per_video"] == one["per_video"]
    assert {k: two[k] for k in ("psnr", "ssim", "fvd", "frames")} == {k: one[k] for k in ("psnr", "ssim", "fvd", "frames")}
