"""The two encoders: image -> M pixel embeddings, log-mel -> N frame embeddings (size D).

Nortje & Kamper (SLT 2022, Sec. 3-4), after DAVEnet (Harwath et al.).
"""
from __future__ import annotations

import torch
from torch import nn

from .presets import Preset


class SmallCNN(nn.Module):
    """Digits image trunk: 3x3 conv/BatchNorm/ReLU, three of stride 2 (32 px -> 4 x 4 = 16 pixels).

    BatchNorm matters: without it the mostly-background digit images give pixel embeddings
    that differ by ~0.5% between images at initialisation, and nothing learns for hundreds
    of steps. (Exported in eval mode, so inference does not depend on the batch.)
    """

    def __init__(self, in_ch: int, channels: tuple):
        super().__init__()
        layers, c = [], in_ch
        for i, out in enumerate(channels):
            layers += [nn.Conv2d(c, out, 3, stride=1 if i == 0 else 2, padding=1, bias=False),
                       nn.BatchNorm2d(out), nn.ReLU()]
            c = out
        self.net = nn.Sequential(*layers)
        self.out_channels = c

    def forward(self, x):
        return self.net(x)


def resnet50_trunk(weights_path: str | None = None) -> nn.Module:
    """torchvision ResNet50 without its pooling and classifier: (B,3,224,224) -> (B,2048,7,7).

    Weights are loaded from ``weights_path`` (a torchvision ``resnet50`` state dict) when
    given; nothing is ever downloaded.
    """
    from torchvision.models import resnet50
    net = resnet50(weights=None)
    if weights_path is not None:
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
        net.load_state_dict(state)
    trunk = nn.Sequential(*list(net.children())[:-2])
    trunk.out_channels = 2048
    return trunk


class FrameNorm(nn.Module):
    """BatchNorm over the valid frames of a right-padded (B, N, C) batch (``norm`` presets).

    Training: statistics over the valid frames only (padding never enters them; padded
    frames come out as 0). Inference (eval mode): a fixed per-channel affine map of each
    frame, so it is causal, streams frame by frame and exports as plain ONNX arithmetic.
    It centres every channel: without it the embeddings share a large component across
    all frames and images, cosine scores barely differ, and training sits on a plateau.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.bn = nn.BatchNorm1d(channels)

    def forward(self, x: torch.Tensor, n_valid: torch.Tensor | None = None) -> torch.Tensor:
        if self.training and n_valid is not None:
            mask = torch.arange(x.shape[1])[None, :] < n_valid[:, None]
            out = torch.zeros_like(x)
            out[mask] = self.bn(x[mask])
            return out
        return self.bn(x.transpose(1, 2)).transpose(1, 2)


class ImageBranch(nn.Module):
    """(B, C, H, W) normalised images -> (B, M, D) pixel embeddings (trunk + 1x1 conv)."""

    def __init__(self, preset: Preset, resnet_weights: str | None = None):
        super().__init__()
        if preset.image_branch == "resnet50":
            self.trunk = resnet50_trunk(resnet_weights)
        else:
            self.trunk = SmallCNN(preset.image.channels, preset.cnn_channels)
        self.proj = nn.Conv2d(self.trunk.out_channels, preset.embed_dim, 1)
        nn.init.zeros_(self.proj.bias)
        self.norm = nn.BatchNorm2d(preset.embed_dim) if preset.norm else nn.Identity()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        y = self.norm(self.proj(self.trunk(images)))
        return y.flatten(2).transpose(1, 2)


def reverse_valid(x: torch.Tensor, n_valid: torch.Tensor | None) -> torch.Tensor:
    """Reverse each row's first ``n_valid`` frames in time (padding stays at the end)."""
    if n_valid is None:
        return torch.flip(x, dims=[1])
    n = x.shape[1]
    t = torch.arange(n)[None, :]
    idx = torch.where(t < n_valid[:, None], n_valid[:, None] - 1 - t, t)
    return x.gather(1, idx[..., None].expand(-1, -1, x.shape[2]))


def init_lstm(lstm: nn.LSTM) -> nn.LSTM:
    """Initialise so the input, not the biases, drives the output through a deep stack.

    PyTorch's default (uniform weights and biases of +-1/sqrt(H)) leaves six stacked
    LSTMs emitting nearly the same vector for every frame (input-dependent part ~1e-3 of
    the output), and training then sits on a long plateau. Here: Xavier input weights,
    orthogonal recurrent weights, zero biases except a forget-gate bias of 1.
    """
    for name, p in lstm.named_parameters():
        if name.startswith("weight_ih"):
            for w in p.data.chunk(4, 0):
                nn.init.xavier_uniform_(w)
        elif name.startswith("weight_hh"):
            for w in p.data.chunk(4, 0):
                nn.init.orthogonal_(w)
        else:
            p.data.zero_()
            if name.startswith("bias_ih"):
                p.data.chunk(4, 0)[1].fill_(1.0)
    return lstm


class BiLSTM(nn.Module):
    """Bidirectional LSTM as two unidirectional ones, correct on right-padded batches.

    The backward LSTM reads each row's valid frames in reverse, so padding never enters
    its state (and no packing is needed, which is 3x slower to train on a CPU).
    Output: (B, N, 2 * hidden), forward then backward halves.
    """

    def __init__(self, inp: int, hidden: int):
        super().__init__()
        self.fwd = init_lstm(nn.LSTM(inp, hidden, batch_first=True))
        self.bwd = init_lstm(nn.LSTM(inp, hidden, batch_first=True))

    def forward(self, x: torch.Tensor, n_valid: torch.Tensor | None = None) -> torch.Tensor:
        b = reverse_valid(self.bwd(reverse_valid(x, n_valid))[0], n_valid)
        return torch.cat([self.fwd(x)[0], b], dim=2)


class Block(nn.Module):
    """LayerNorm -> ReLU -> Linear; with ``residual`` and equal widths, x + block(x)."""

    def __init__(self, a: int, b: int, residual: bool):
        super().__init__()
        self.f = nn.Sequential(nn.LayerNorm(a), nn.ReLU(), nn.Linear(a, b))
        self.residual = residual and a == b

    def forward(self, x):
        return x + self.f(x) if self.residual else self.f(x)


class AudioBranch(nn.Module):
    """(B, T, n_mels) log-mel -> (B, N, D) frame embeddings at 50 frames/s, N = T // 2."""

    def __init__(self, preset: Preset):
        super().__init__()
        fe = preset.front_end
        self.conv = nn.Conv1d(fe.n_mels, preset.conv_channels, 4, stride=2, padding=1)
        self.conv_norm = FrameNorm(preset.conv_channels) if preset.norm else None
        self.out_norm = FrameNorm(preset.embed_dim) if preset.norm else None
        dims = (preset.conv_channels,) + tuple(preset.mlp_dims[1:])
        self.residual = preset.residual
        self.mlp = nn.Sequential(*[Block(a, b, preset.residual) for a, b in zip(dims[:-1], dims[1:])])
        self.lstms = nn.ModuleList([init_lstm(nn.LSTM(dims[-1] if i == 0 else preset.lstm_hidden,
                                                      preset.lstm_hidden, batch_first=True)) for i in range(4)])
        self.bilstm1 = BiLSTM(preset.lstm_hidden, preset.bilstm1_hidden)
        self.bilstm2 = BiLSTM(2 * preset.bilstm1_hidden, preset.bilstm2_hidden)

    def causal(self, feats: torch.Tensor, n_valid: torch.Tensor | None = None) -> torch.Tensor:
        """The causal part (conv, MLP, unidirectional LSTMs): (B, T, n_mels) -> (B, N, H)."""
        x = self.conv(feats.transpose(1, 2)).transpose(1, 2)
        if self.conv_norm is not None:
            x = self.conv_norm(x, n_valid)
        x = self.mlp(x)
        for i, lstm in enumerate(self.lstms):
            y = lstm(x)[0]
            x = x + y if self.residual and i > 0 else y
        return x

    def causal_chunk(self, feats: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor):
        """The causal part on a piece of a stream, with the LSTM states carried (inference only).

        Args:
            feats: (B, 2k + 2, n_mels) log-mel frames 2 n0 - 1 .. 2 n0 + 2k of the stream for
                embeddings n0 .. n0 + k - 1; the conv's padding is the caller's: frame -1 (and
                frame T of a stream of T frames ending at an even count) are zero frames.
            h0, c0: (4, B, lstm_hidden) states of the four unidirectional LSTMs (zeros at the start).
        Returns:
            ((B, k, H) causal frames, h1, c1). Over consecutive pieces (each starting two frames
            before the previous one ended) this equals :meth:`causal` on the whole stream.
        """
        x = nn.functional.conv1d(feats.transpose(1, 2), self.conv.weight, self.conv.bias, stride=2)
        x = x.transpose(1, 2)
        if self.conv_norm is not None:
            x = self.conv_norm(x)
        x = self.mlp(x)
        hs, cs = [], []
        for i, lstm in enumerate(self.lstms):
            y, (h, c) = lstm(x, (h0[i:i + 1], c0[i:i + 1]))
            x = x + y if self.residual and i > 0 else y
            hs.append(h)
            cs.append(c)
        return x, torch.cat(hs), torch.cat(cs)

    def forward(self, feats: torch.Tensor, n_valid: torch.Tensor | None = None) -> torch.Tensor:
        """``n_valid`` (B,) valid frames per row of a right-padded batch; None: all valid."""
        return self.bidirectional(self.causal(feats, n_valid), n_valid)

    def bidirectional(self, x: torch.Tensor, n_valid: torch.Tensor | None = None) -> torch.Tensor:
        """The non-causal part (the two BiLSTMs, then the output norm if any): (B, N, H) -> (B, N, D)."""
        y = self.bilstm2(self.bilstm1(x, n_valid), n_valid)
        return y if self.out_norm is None else self.out_norm(y, n_valid)
