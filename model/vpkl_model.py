"""The full PyTorch model: preset -> image branch + audio branch + front end + head."""
from __future__ import annotations

import torch
from torch import nn

from .branches import AudioBranch, ImageBranch
from .frontend import FrontEnd
from .head import localising_attention
from .presets import Preset, get_preset


class VPKLModel(nn.Module):
    """Visually prompted keyword localisation model (Nortje & Kamper, SLT 2022)."""

    def __init__(self, preset: Preset, resnet_weights: str | None = None):
        super().__init__()
        self.preset = preset
        self.front_end = FrontEnd(preset.front_end)
        self.image = ImageBranch(preset, resnet_weights)
        self.audio = AudioBranch(preset)

    @staticmethod
    def n_valid(n_frames: torch.Tensor) -> torch.Tensor:
        """Audio embeddings per utterance from its log-mel frame counts: the conv's stride 2 halves them."""
        return torch.div(n_frames, 2, rounding_mode="floor")

    def score(self, images: torch.Tensor, feats: torch.Tensor, n_frames: torch.Tensor):
        """All pairs: images (Q, C, H, W), feats (B, T, n_mels) -> S (Q, B), aud_att, im_att."""
        n_valid = self.n_valid(n_frames)
        return localising_attention(self.image(images), self.audio(feats, n_valid), n_valid)


def build_model(preset: str | Preset, resnet_weights: str | None = None) -> VPKLModel:
    """Build a model with random weights (or ResNet50 weights from a local file)."""
    return VPKLModel(get_preset(preset) if isinstance(preset, str) else preset, resnet_weights)


def save_checkpoint(model: VPKLModel, path: str, **extra) -> None:
    """Write ``{'preset': dict, 'state_dict': ..., **extra}`` (threshold, keywords, ...)."""
    torch.save({"format": "vpkl-ckpt-1", "preset": model.preset.to_dict(),
                "state_dict": model.state_dict(), **extra}, path)


def load_checkpoint(path: str) -> tuple[VPKLModel, dict]:
    """Read a checkpoint written by :func:`save_checkpoint`; returns (model in eval mode, ckpt dict)."""
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(ckpt, dict) or ckpt.get("format") != "vpkl-ckpt-1":
        raise ValueError(f"{path}: not a vpkl checkpoint")
    model = VPKLModel(Preset.from_dict(ckpt["preset"]))
    model.load_state_dict(ckpt["state_dict"])
    return model.eval(), ckpt
