"""vidtok.export and jobs/export.py: official-layout files always, a diffusers folder for v1.1 / non-causal only.

Round trips: the `.ckpt` and `.safetensors` load back bit-identically through `VidTok.from_pretrained`; the diffusers
folder loads with `AutoencoderVidTok.from_pretrained` and gives this model's outputs. Tests that need diffusers skip
without it (CI installs the `interop` extra).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.vidtok.test_properties import randomize, video
from vidtok import VidTok
from vidtok.export import (DIFFUSERS_CONFIG, DIFFUSERS_WEIGHTS, DiffusersExportRefused, diffusers_config,
                           diffusers_refusal, export_model, save_diffusers)

REPO = Path(__file__).resolve().parents[2]
torch.set_num_threads(2)


def _diffusers():
    return pytest.importorskip("diffusers", minversion="0.42.1",
                               reason="diffusers>=0.42.1 is not installed: pip install -e '.[interop]'")


def _assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys(), f"keys differ: {sorted(set(a) ^ set(b))[:5]}"
    bad = [k for k in a if not torch.equal(a[k], b[k])]
    assert not bad, f"{len(bad)} tensors differ after the round trip (first: {bad[:3]})"


@pytest.mark.parametrize("preset", ["vidtok_fsq_causal_488_32768_v1_1_tiny", "vidtok_kl_noncausal_488_4chn_tiny"])
def test_export_official_files_round_trip_bit_exact(tmp_path, preset):
    """The .ckpt ({'state_dict': ...}) and .safetensors load back into VidTok.from_pretrained with identical weights."""
    model = randomize(VidTok.from_config(preset), 3)
    out = export_model(model, tmp_path, diffusers="skip")
    assert set(out) == {"official"}
    assert torch.load(out["official"]["ckpt"], weights_only=True).keys() == {"state_dict"}
    for path in out["official"].values():
        assert Path(path).name.startswith(preset)
        _assert_same_state(VidTok.from_pretrained(preset, path).official_state_dict(), model.official_state_dict())


@pytest.mark.parametrize("preset,T", [("vidtok_fsq_causal_488_32768_v1_1_tiny", 17),
                                      ("vidtok_kl_noncausal_488_4chn_tiny", 16)])
def test_export_diffusers_folder_round_trips_outputs(tmp_path, preset, T):
    """The diffusers folder loads with AutoencoderVidTok.from_pretrained and reconstructs (and tokenizes) like VidTok."""
    _diffusers()
    from diffusers import AutoencoderVidTok

    model = randomize(VidTok.from_config(preset), 4)
    out = export_model(model, tmp_path)
    folder = Path(out["diffusers"])
    assert {p.name for p in folder.iterdir()} == {DIFFUSERS_CONFIG, DIFFUSERS_WEIGHTS}
    d = AutoencoderVidTok.from_pretrained(str(folder)).eval()
    written = json.loads((folder / DIFFUSERS_CONFIG).read_text())
    assert written["_class_name"] == "AutoencoderVidTok"
    for key, value in diffusers_config(model.config).items():
        assert d.config[key] == value, f"config {key}: diffusers read {d.config[key]!r}, we wrote {value!r}"
    x = video(1, T, 16, 24, seed=5)
    with torch.no_grad():
        ours, theirs = model.reconstruct(x), d(x, sample_posterior=False).sample
        diff = (ours - theirs).abs()
        assert diff.max() < 5e-5, f"recon max diff {diff.max().item():.3e}, mean diff {diff.mean().item():.3e}"
        if model.regularizer_kind == "fsq":
            _, ids = d.encode(torch.cat([x[:, :, :1]] * 3 + [x], dim=2))
            assert torch.equal(ids.long(), model.encode(x).indices.long()), "token ids differ after the export"


def test_export_refuses_diffusers_for_v10_but_writes_official(tmp_path):
    """v1.0 causal: no diffusers folder (the reason names v1.1 behaviour and the official files); official files load."""
    preset = "vidtok_kl_causal_488_4chn_tiny"
    model = randomize(VidTok.from_config(preset), 5)
    out = export_model(model, tmp_path / "auto")
    assert "diffusers" not in out and not (tmp_path / "auto" / "diffusers").exists()
    reason = out["diffusers_refused"]
    for phrase in ("v1.1 behaviour", "replicated first frame", "trilinear", "silently", ".ckpt / .safetensors"):
        assert phrase in reason, f"refusal should mention {phrase!r}: {reason}"
    _assert_same_state(VidTok.from_pretrained(preset, out["official"]["safetensors"]).official_state_dict(),
                       model.official_state_dict())
    with pytest.raises(DiffusersExportRefused, match="v1.1 behaviour"):
        export_model(model, tmp_path / "require", diffusers="require")
    assert (tmp_path / "require" / f"{preset}.ckpt").is_file(), "official files are written before refusing"
    with pytest.raises(DiffusersExportRefused):
        save_diffusers(model, tmp_path / "direct")


def test_diffusers_refusal_covers_every_v10_preset_only():
    """Every v1.0 causal preset is refused; every v1.1 and non-causal preset maps (FSQ levels are all 8s)."""
    from vidtok.presets import list_presets, preset_config

    for name in list_presets(include_tiny=False):
        cfg = preset_config(name)
        reason = diffusers_refusal(cfg)
        assert (reason is not None) == (cfg.family == "causal_v1_0"), f"{name}: {cfg.family} -> {reason}"
    nearest = preset_config("vidtok_kl_causal_488_4chn_v1_1").replace(interpolation_mode="nearest")
    assert "trilinear" in diffusers_refusal(nearest)


def _run(argv: list[str]) -> int:
    """The job as `python jobs/export.py` runs it (pipeline.entrypoints.run_command), in this process."""
    from pipeline.entrypoints import run_command

    return run_command("export", argv)


def test_export_job_writes_files_and_config(tmp_path, capsys):
    """jobs/export.py preset=... checkpoint=... output=... writes both layouts, its resolved config and a JSON summary."""
    preset = "vidtok_kl_causal_488_4chn_tiny"  # v1.0: no diffusers import needed, refusal path exercised
    ckpt = tmp_path / "in.ckpt"
    torch.save({"state_dict": randomize(VidTok.from_config(preset), 6).official_state_dict()}, ckpt)
    rc = _run([f"preset={preset}", f"checkpoint={ckpt}", f"output={tmp_path / 'out'}"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert Path(summary["official"]["safetensors"]).is_file() and "diffusers_refused" in summary
    assert "preset: " + preset in (tmp_path / "out" / "export_config.yaml").read_text()


def test_export_job_config_errors_exit_2(tmp_path, capsys):
    """A missing required key, an unknown key, a bad choice or an unknown preset exits with code 2 and says which."""
    assert _run([f"output={tmp_path}"]) == 2
    assert "preset" in capsys.readouterr().err
    assert _run(["preset=x", "checkpoint=y", f"output={tmp_path}", "colour=red"]) == 2
    assert "colour" in capsys.readouterr().err
    assert _run(["preset=x", "checkpoint=y", f"output={tmp_path}", "diffusers=maybe"]) == 2
    assert "diffusers" in capsys.readouterr().err
    assert _run(["preset=no_such_preset", f"checkpoint={tmp_path / 'x.ckpt'}", f"output={tmp_path}"]) == 2
    assert "no_such_preset" in capsys.readouterr().err


def test_vidtok_import_does_not_import_diffusers():
    """Importing vidtok and vidtok.export loads neither diffusers nor Ray (diffusers is imported lazily)."""
    code = ("import sys, vidtok, vidtok.export, vidtok.metrics; "
            "bad = [m for m in ('diffusers', 'ray', 'pyarrow') if m in sys.modules]; assert not bad, bad")
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                         env={**__import__("os").environ, "PYTHONPATH": str(REPO)})
    assert res.returncode == 0, res.stderr[-2000:]
