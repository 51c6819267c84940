"""LPIPS perceptual distance (spec §11.4) built from the `lpips` package, with the VGG16 backbone loaded offline.

The official loss uses `lpips.LPIPS`-style VGG16 features (relu1_2 … relu5_3), channel-normalised, squared
differences through 1×1 linear heads, spatially averaged and summed. The linear heads ship inside the `lpips` wheel
(`weights/v0.1/vgg.pth`, the same file, md5 d507d734…, that taming-transformers downloads). Only the ImageNet VGG16
backbone is not bundled: torchvision would download it, which this project never does. We therefore build the
package's module with a random trunk and copy the torchvision VGG16 `features.*` weights into it from a local file:

1. `backbone_path` if given, else
2. `$VIDTOK_VGG16_PATH`, else
3. the torch hub cache: `$TORCH_HOME/hub/checkpoints/vgg16-397923af.pth` (default `~/.cache/torch/...`).

If none exists, `VGG16WeightsNotFound` says where to put the file. Tests (and the tiny CI preset, when asked) pass
`random_backbone=True` explicitly; that is only a smoke-test metric and logs a loud warning.

State-dict keys are the package's (`net.slice{1-5}.{i}.*`, `lin{0-4}.model.1.weight`, `scaling_layer.*`), i.e. the
official `loss.perceptual_loss.*` keys.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)

VGG16_FILENAME = "vgg16-397923af.pth"  # torchvision's ImageNet VGG16 (IMAGENET1K_V1)
# torchvision `features` index -> LPIPS slice; lpips keeps torchvision's indices inside each slice.
_SLICES = {1: range(0, 4), 2: range(4, 9), 3: range(9, 16), 4: range(16, 23), 5: range(23, 30)}


class VGG16WeightsNotFound(FileNotFoundError):
    """The ImageNet VGG16 backbone for LPIPS is not on this machine (nothing is downloaded at run time)."""


def default_vgg16_path() -> Path:
    """Where torchvision would cache the VGG16 weights: `$TORCH_HOME/hub/checkpoints/vgg16-397923af.pth`."""
    return Path(torch.hub.get_dir()) / "checkpoints" / VGG16_FILENAME


def find_vgg16_weights(backbone_path: str | os.PathLike | None = None) -> Path:
    """Resolve the local VGG16 file (explicit path > $VIDTOK_VGG16_PATH > torch hub cache) or raise with the fix."""
    candidates = [backbone_path, os.environ.get("VIDTOK_VGG16_PATH"), default_vgg16_path()]
    for c in candidates:
        if c and Path(c).is_file():
            return Path(c)
    raise VGG16WeightsNotFound(
        "LPIPS needs the ImageNet VGG16 backbone and nothing is downloaded at run time. Put torchvision's "
        f"'{VGG16_FILENAME}' at {default_vgg16_path()} (or set VIDTOK_VGG16_PATH / loss.lpips_backbone_path to its "
        "path). On a machine with internet: python -c \"import torchvision; torchvision.models.vgg16(weights='IMAGENET1K_V1')\" "
        "fills that cache. For smoke tests only, set loss.lpips_random_backbone=true or loss.perceptual_weight=0."
    )


def build_lpips(backbone_path: str | os.PathLike | None = None, random_backbone: bool = False) -> nn.Module:
    """An `lpips.LPIPS(net='vgg')` module, frozen, in eval mode, with the bundled linear heads.

    Call it as `lpips(a, b)` with `a, b: (N, 3, H, W)` float in [-1, 1]; returns `(N, 1, 1, 1)` distances.
    Like the official loss, the module is put in eval mode here but follows its parent's `train()` afterwards, so its
    dropout (p=0.5 before each linear head) is active while the loss trains (spec §11.4 item 6).
    """
    import lpips  # the package ships the linear-head weights; imported lazily so inference never needs it

    # pnet_rand=True: never let torchvision download; the package prints a banner, which we silence.
    with contextlib.redirect_stdout(io.StringIO()):
        module = lpips.LPIPS(net="vgg", version="0.1", pretrained=True, pnet_rand=True, verbose=False)
    if random_backbone:
        log.warning(
            "LPIPS uses a RANDOM VGG16 backbone (lpips_random_backbone=true): perceptual loss and LPIPS metrics are "
            "not meaningful. Put %s at %s for real training/evaluation.", VGG16_FILENAME, default_vgg16_path()
        )
    else:
        path = find_vgg16_weights(backbone_path)
        state = torch.load(path, map_location="cpu", weights_only=True)
        load_vgg16_features(module.net, state)
        log.info("LPIPS VGG16 backbone loaded from %s", path)
    for p in module.parameters():
        p.requires_grad_(False)
    _official_key_layout(module)
    return module.eval()


def _official_key_layout(module: nn.Module) -> None:
    """Make the state dict carry only `lin{k}.*` (official layout), not the package's duplicate `lins.{k}.*` aliases.

    `lins` is a ModuleList over the same `lin{k}` modules, so dropping its keys loses nothing; on load the aliases are
    filled from `lin{k}` so strict loading of official `loss.perceptual_loss.*` keys works.
    """

    def drop_aliases(mod, state, prefix, local_metadata):
        for k in [k for k in state if k.startswith(prefix + "lins.")]:
            del state[k]
        return state

    def add_aliases(state, prefix, *args, **kwargs):
        for k in [k for k in state if k.startswith(prefix + "lin") and not k.startswith(prefix + "lins.")]:
            rest = k[len(prefix) + 3 :]  # "<k>.model.1.weight"
            state[f"{prefix}lins.{rest}"] = state[k]

    module._register_state_dict_hook(drop_aliases)
    module._register_load_state_dict_pre_hook(add_aliases)


def load_vgg16_features(net: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy torchvision VGG16 `features.{i}.weight/bias` into the lpips trunk's `slice{k}.{i}` convs; strict."""
    target = net.state_dict()
    new = {}
    for k, idxs in _SLICES.items():
        for i in idxs:
            for name in ("weight", "bias"):
                src, dst = f"features.{i}.{name}", f"slice{k}.{i}.{name}"
                if dst in target:
                    if src not in state:
                        raise ValueError(f"VGG16 weights file lacks {src!r}: expected torchvision's {VGG16_FILENAME}")
                    new[dst] = state[src]
    missing = set(target) - set(new)
    if missing:
        raise ValueError(f"VGG16 weights do not cover LPIPS trunk keys {sorted(missing)[:4]}…")
    net.load_state_dict(new, strict=True)
