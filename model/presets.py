"""Named model presets: ``paper`` (the published sizes) and ``digits`` (a small CPU model).

Sizes follow Nortje & Kamper (SLT 2022, Sec. 4): ResNet50 + 1x1 conv image branch giving
M = 7 x 7 pixel embeddings of D = 2048; audio branch Conv1d(40->512, k4, s2, p1) -> five
LayerNorm/ReLU/Linear blocks to z = 64 -> four LSTMs (512) -> BiLSTM(512) -> BiLSTM(1024),
N frame embeddings of D = 2048 at 50 frames/s. The widths of the inner MLP blocks are not
given in the paper; ours are listed in ``mlp_dims``.

``digits`` adds skip connections (x + f(x)) around the equal-width MLP blocks and the
second to fourth LSTMs: without them this deep stack, trained from scratch on a CPU budget,
did not learn even single-digit classification in the steps available (measured while
building the recipe). It also sets ``norm``: BatchNorm after the audio conv and on the
output embeddings of both branches (per channel, over valid frames / pixels). Untrained,
the embeddings share a large component that dominates every cosine; centring it away
cut the initial plateau of training several-fold (measured). ``paper`` keeps the
published plain stack.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from vpkl.runtime.features import FrontEndConfig
from vpkl.runtime.images import ImageConfig


@dataclass(frozen=True)
class Preset:
    """One model size. ``mlp_dims`` runs from the conv width to z (five blocks: six numbers)."""

    name: str
    image_branch: str                 # "resnet50" or "small_cnn"
    image: ImageConfig
    embed_dim: int                    # D
    conv_channels: int
    mlp_dims: tuple
    lstm_hidden: int                  # the four unidirectional LSTMs
    bilstm1_hidden: int               # per direction
    cnn_channels: tuple = ()          # small_cnn only
    residual: bool = False            # skip connections around equal-width MLP blocks and LSTMs
    norm: bool = False                # BatchNorm after the audio conv, on the audio frames and pixel embeddings
    front_end: FrontEndConfig = field(default_factory=FrontEndConfig)

    @property
    def bilstm2_hidden(self) -> int:
        return self.embed_dim // 2

    @property
    def frame_rate(self) -> float:
        """Audio embeddings per second: the conv's stride 2 halves the 100 Hz log-mel rate."""
        return self.front_end.sample_rate / self.front_end.hop_length / 2

    def to_dict(self) -> dict:
        d = asdict(self)
        d["image"] = self.image.to_dict()
        d["front_end"] = self.front_end.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Preset":
        d = dict(d)
        d["image"] = ImageConfig.from_dict(d["image"])
        d["front_end"] = FrontEndConfig.from_dict(d["front_end"])
        d["mlp_dims"] = tuple(d["mlp_dims"])
        d["cnn_channels"] = tuple(d["cnn_channels"])
        return cls(**d)


PRESETS = {
    "paper": Preset(
        name="paper", image_branch="resnet50", image=ImageConfig(), embed_dim=2048,
        conv_channels=512, mlp_dims=(512, 512, 256, 256, 128, 64),
        lstm_hidden=512, bilstm1_hidden=512),
    "digits": Preset(
        name="digits", image_branch="small_cnn",
        image=ImageConfig(mode="L", resize=32, size=32, mean=(0.5,), std=(0.5,), drawing=True, margin=0.0),
        embed_dim=128, conv_channels=96, mlp_dims=(96, 96, 96, 64, 64, 64),
        lstm_hidden=64, bilstm1_hidden=64, cnn_channels=(32, 64, 64, 96), residual=True,
        norm=True),
}


def get_preset(name: str) -> Preset:
    """Look up a preset by name; ``ValueError`` naming the known presets otherwise."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}: expected one of {sorted(PRESETS)}")
    return PRESETS[name]
