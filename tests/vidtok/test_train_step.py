"""The pure-torch training step (no Ray): overfitting lowers the loss, stage 2 leaves the encoder bit-identical,
and a checkpoint restores model + optimiser + RNG so the next step is identical to an uninterrupted run."""

from __future__ import annotations

import copy

import torch

from vidtok.train_state import module_digest, restore_training_state, training_state
from vidtok import VidTok
from vidtok.losses import LossConfig, VidTokLoss
from vidtok.train_step import OptimConfig, TrainEngine, TrainState, make_optimizers, rng_state, set_rng_state, train_step

torch.set_num_threads(1)
PRESET = "vidtok_kl_causal_488_4chn_tiny"


def _engine(freeze=False, disc_start=3, seed=0):
    torch.manual_seed(seed)
    model = VidTok.from_config(PRESET)
    loss = VidTokLoss(LossConfig(perceptual_weight=0.0, disc_ndf=8, disc_start=disc_start))
    return TrainEngine(model, loss, freeze_encoder=freeze)


def _clip(seed=0, b=1):
    g = torch.Generator().manual_seed(seed)
    # smooth content (a tiny model can fit it quickly): low-res noise upsampled
    low = torch.rand(b, 3, 17, 4, 4, generator=g) * 2 - 1
    return torch.nn.functional.interpolate(low, size=(17, 32, 32), mode="trilinear", align_corners=False)


def test_train_step_overfits_fixed_clip():
    """On one fixed clip the reconstruction loss falls by more than 20 % within 25 steps (GAN off)."""
    eng = _engine(disc_start=10**9)
    opt = OptimConfig(lr=2e-3)
    oa, od = make_optimizers(eng, opt)
    st, x = TrainState(), _clip()
    first = train_step(eng, oa, od, x, st, opt)["rec_loss"]
    for _ in range(24):
        last = train_step(eng, oa, od, x, st, opt)["rec_loss"]
    assert st.step == 25 and st.clips_seen == 25
    assert last < 0.8 * first, f"rec_loss {first:.4f} -> {last:.4f}"


def test_train_step_stage2_keeps_encoder_bit_identical():
    """Stage 2: encoder and regularizer frozen (no grads, eval mode, not in the optimiser); the decoder trains."""
    eng = _engine(freeze=True)
    opt = OptimConfig(lr=1e-3)
    oa, od = make_optimizers(eng, opt)
    enc0, dec0 = module_digest(eng.model.encoder), module_digest(eng.model.decoder)
    enc_ids = {id(p) for p in eng.model.encoder.parameters()}
    assert not any(id(p) in enc_ids for g in oa.param_groups for p in g["params"])
    st = TrainState()
    for i in range(4):  # crosses disc_start, so the GAN and the adaptive weight run too
        m = train_step(eng, oa, od, _clip(i), st, opt)
        assert not eng.model.encoder.training and eng.model.decoder.training
    assert m["disc_factor"] == 1.0 and m["d_weight"] > 0
    assert all(p.grad is None for p in eng.model.encoder.parameters())
    assert module_digest(eng.model.encoder) == enc0
    assert module_digest(eng.model.decoder) != dec0


def test_train_step_checkpoint_restores_exact_state():
    """Save after 3 steps, restore into a freshly built engine: step 4 gives identical metrics and weights."""
    opt = OptimConfig(lr=1e-3)
    eng = _engine()
    oa, od = make_optimizers(eng, opt)
    st = TrainState()
    for i in range(3):
        train_step(eng, oa, od, _clip(i), st, opt)
    payload = copy.deepcopy(training_state(eng, oa, od, st, PRESET, 1))
    rng = copy.deepcopy(rng_state())
    ref = train_step(eng, oa, od, _clip(3), st, opt)  # KL sampling draws from the RNG: restored below

    eng2 = _engine(seed=123)  # different initial weights: everything must come from the checkpoint
    oa2, od2 = make_optimizers(eng2, opt)
    st2 = TrainState()
    restore_training_state(payload, eng2, oa2, od2, st2)
    set_rng_state(rng)
    assert st2.step == 3
    got = train_step(eng2, oa2, od2, _clip(3), st2, opt)
    for k in ("total_loss", "nll_loss", "kl_loss", "disc_loss", "d_weight", "lecam_loss"):
        assert got[k] == ref[k], (k, got[k], ref[k])
    for (n, a), b in zip(eng.state_dict().items(), eng2.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=lambda m, n=n: f"{n}: {m}")
    assert eng.loss.lecam.state_dict() == eng2.loss.lecam.state_dict()
