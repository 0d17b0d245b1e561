"""The digits training recipe: `vpkl train --recipe digits --data DIR --out CKPT`.

Each step synthesises a fresh batch of utterances from the training speakers (see
:mod:`vpkl.training.digits_data`), computes features with augmentation (frequency warp,
SpecAugment-style masks), draws digit images (random shifts) and scores them with the
localising-attention head. Two losses on the cosine c = 2 S - 1 against the +1/-1 targets
of the chosen sampling:

- ``bce`` (default): a sigmoid cross-entropy on tau * c + b with a learnt scale tau and
  offset b (used only in training; S itself is unchanged). It does not ask every
  negative pair for c = -1, which the 2-5 keywords of an utterance cannot all satisfy,
  and it learnt several times faster than the MSE here;
- ``mse``: the paper's MSE, (c - target)^2 (Nortje & Kamper, SLT 2022, Sec. 3.3).

Keyword prototypes (``all_pairs``, on by default): one learnt set of M x D "pixel"
embeddings per keyword, scored with the same head against the utterances (targets from
the utterance's keywords, as for images) and against the images (target: the image's
keyword). They use no information the image pairs do not already carry (the image's
keyword and the utterance's set of keywords) and are discarded after training. The
audio branch learns from a consistent target per keyword from the first step instead of
from an image branch that is still random (the README gives what it measured).

Joined inputs (``concat``, off by default): pairs of utterances joined into one input of
the audio branch, each scored on its own frames (see :func:`split_frames`). It targets a
measured defect: on a new speaker most localisation misses fall on the first or last frame,
where the BiLSTMs hold a summary of the whole utterance. It helps localisation but, in the
steps the recipe has, costs detection (README, *Training options*), so it is not the default.

Keyword-free speech (``keyword_free``, ``mixed``, ``synth``; off by default): utterances with no
keyword and digits mixed with non-digit words, from :mod:`vpkl.training.negatives`, so the model
learns to stay quiet on other speech; synthetic voices also say the digits as extra speakers.

Long context (``long_context``, off by default): that share of utterances starts with 0.5-2.5 s of
noise bed and has pauses of up to 1 s (:func:`vpkl.training.negatives.compose`), as a stream's
window has; without it, words after a pause of a second were missed in streams (README, *Streaming*).

At the end the detection threshold is chosen on the validation split (best F1) and
stored in the checkpoint with the keyword names.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from vpkl.model.frontend import spec_augment
from vpkl.model.head import localising_attention
from vpkl.model.vpkl_model import VPKLModel, build_model, save_checkpoint
from vpkl.runtime.images import preprocess

from . import digits_data as dd
from . import negatives as ng
from .sampling import SAMPLINGS, all_pairs_targets, pick_negative, pick_positive


@dataclass
class TrainConfig:
    data: str
    out: str
    steps: int = 1000
    batch_size: int = 32
    lr: float = 1e-3           # peak of a one-cycle schedule; 2e-3 and above oscillate
    seed: int = 0
    sampling: str = "all_pairs"
    loss: str = "bce"
    warp: float = 0.12          # frequency warp factor drawn from [1 - warp, 1 + warp]
    concat: float = 0.0         # chance that two utterances share one pass of the audio branch (see split_frames)
    speed_perturb: bool = True  # add copies of each recording at 0.9, 0.95, 1.05 and 1.1 times the speed
    spec_augment: bool = True
    threads: int = 2
    val_utterances: int = 400
    images_per_keyword: int = 3  # all_pairs: query images per keyword in each batch
    prototypes: bool = True      # all_pairs: learnt keyword prototypes as an extra target
    keyword_free: float = 0.0    # share of utterances with no keyword (see vpkl.training.negatives)
    mixed: float = 0.0           # share of utterances mixing digits with non-keyword words
    synth: str | None = None     # synthetic speech cache (vpkl.training.synth_speech): extra digit voices, text
    held_out_speaker: str | None = dd.HELD_OUT_SPEAKER  # None: train on every FSDD speaker
    reversed_speech: bool = False  # keyword-free pieces also from real recordings played backwards
    query_styles: bool = False     # images also drawn dark, resized and photographed (query_styles)
    long_context: float = 0.0      # share of utterances with a long lead-in and long pauses (negatives.compose)


def seed_everything(seed: int) -> np.random.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def image_tensor(images: np.ndarray, preset) -> torch.Tensor:
    """(K, 8, 8) uint8 digits -> (K, 1, 32, 32) network input, via the runtime's preprocessing."""
    return torch.from_numpy(np.stack([preprocess(Image.fromarray(im), preset.image) for im in images]))


def styled_images(images: np.ndarray, labels: np.ndarray, preset, seed: int) -> tuple[torch.Tensor, np.ndarray]:
    """Every (8, 8) training digit once in each query style of :mod:`vpkl.training.query_styles`
    (as it is, dark on light, resized into a larger canvas, photographed: polarity, scale, stroke
    width, rotation, blur, JPEG, uneven light), through the runtime's preprocessing.

    Returns ((4 K, 1, 32, 32) float32, (4 K,) labels); about a minute for the 1078 training digits.
    """
    from .query_styles import STYLES, render
    rng = np.random.default_rng(seed)
    x = [preprocess(render(im, style, rng), preset.image) for style in STYLES for im in images]
    return torch.from_numpy(np.stack(x)), np.tile(labels, len(STYLES))


def shift_images(rng: np.random.Generator, x: torch.Tensor, max_shift: int = 3) -> torch.Tensor:
    """Random translation by up to ``max_shift`` px (edges filled with the background value)."""
    out = torch.full_like(x, float(x.min()))
    _, _, h, w = x.shape
    for i in range(x.shape[0]):
        dy, dx = (int(v) for v in rng.integers(-max_shift, max_shift + 1, size=2))
        out[i, :, max(0, dy):h + min(0, dy), max(0, dx):w + min(0, dx)] = \
            x[i, :, max(0, -dy):h + min(0, -dy), max(0, -dx):w + min(0, -dx)]
    return out


def pad_batch(utts: list) -> tuple[torch.Tensor, torch.Tensor]:
    n = max(len(u.samples) for u in utts)
    audio = torch.zeros(len(utts), n)
    for i, u in enumerate(utts):
        audio[i, :len(u.samples)] = torch.from_numpy(u.samples)
    return audio, torch.tensor([len(u.samples) for u in utts])


def utterance_features(model: VPKLModel, utts: list, rng=None, warp: float = 0.0, augment: bool = False):
    audio, lengths = pad_batch(utts)
    factors = None
    if warp > 0 and rng is not None:
        factors = torch.from_numpy(rng.uniform(1 - warp, 1 + warp, size=len(utts))).float()
    feats, t = model.front_end(audio, lengths, factors)
    if augment:
        spec_augment(feats, t, rng)
    return feats, t


def join_pairs(rng, utts: list, p: float) -> tuple[list, list]:
    """Group utterances into audio-branch inputs: consecutive pairs are joined end to end
    with probability ``p``. Returns (inputs, groups): ``groups[i]`` lists the utterance
    indices of input i and the sample where each starts."""
    inputs, groups, i = [], [], 0
    while i < len(utts):
        if p > 0 and i + 1 < len(utts) and rng.random() < p:
            a, b = utts[i], utts[i + 1]
            inputs.append(dd.Utterance(np.concatenate([a.samples, b.samples]), [], a.snr_db, a.peak_dbfs))
            groups.append([(i, 0), (i + 1, len(a.samples))])
            i += 2
        else:
            inputs.append(utts[i])
            groups.append([(i, 0)])
            i += 1
    return inputs, groups


def split_frames(frames: torch.Tensor, n_valid: torch.Tensor, groups: list, n_utts: int, fe) -> tuple:
    """Cut the audio branch's output for joined inputs back into one row per utterance.

    frames: (G, N, D) for the G inputs; returns ((n_utts, N', D) right-padded, (n_utts,) valid
    frames). An utterance starting at sample L owns the frames from the one centred nearest
    L on (``FrontEndConfig.nearest_embedding``, the runtime's frame centres), so
    the frame straddling the join goes to the second utterance. The joined input is one
    stream to the front end: the causal normaliser carries its statistics over the join
    (as it does in a live stream) and both utterances share one frequency-warp factor.

    Why: trained on single utterances, the BiLSTMs learn to store a summary of the whole
    utterance in its first and last frames (their backward and forward states have seen
    all of it), and aud_att then peaks there instead of on the keyword (measured: most
    localisation misses on a new speaker fell on the edge frames). Inside a joined input
    those frames also summarise the other utterance, whose keywords differ, so only the
    frames of the keyword itself stay reliable evidence.
    """
    pieces = []
    for g, members in enumerate(groups):
        cuts = [fe.nearest_embedding(start) if start else 0 for _, start in members] + [int(n_valid[g])]
        for (u, _), a, b in zip(members, cuts[:-1], cuts[1:]):
            pieces.append((u, frames[g, a:b]))
    pieces.sort(key=lambda x: x[0])
    lengths = torch.tensor([len(x) for _, x in pieces])
    out = frames.new_zeros(n_utts, int(lengths.max()), frames.shape[2])
    for u, x in pieces:
        out[u, :len(x)] = x
    return out, lengths


def keyword_sets(utts) -> list[set]:
    return [{dd.KEYWORDS.index(w[0]) for w in u.words} for u in utts]


def batch_auc(s: torch.Tensor, target: torch.Tensor) -> float:
    """Share of (positive, negative) pairs ranked correctly: a progress figure for the bar."""
    sv, tv = s.detach().numpy().ravel(), target.numpy().ravel() > 0
    if tv.all() or not tv.any():
        return 0.5
    return float((sv[tv][:, None] > sv[~tv][None, :]).mean())


LOSSES = ("bce", "mse")


class PairLoss(torch.nn.Module):
    """Loss of cosines c (any shape) against +1/-1 targets: ``bce`` (learnt tau, b) or ``mse``."""

    def __init__(self, kind: str):
        super().__init__()
        if kind not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {kind!r}")
        self.kind = kind
        self.tau = torch.nn.Parameter(torch.tensor(10.0))
        self.bias = torch.nn.Parameter(torch.tensor(-3.0))

    def forward(self, cos: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.kind == "mse":
            return torch.mean((cos - target) ** 2)
        return torch.nn.functional.binary_cross_entropy_with_logits(self.tau * cos + self.bias,
                                                                    (target > 0).to(cos.dtype))


def step_loss(model: VPKLModel, cfg: TrainConfig, rng, recs, images, by_label, noise,
              pair_loss: PairLoss, prototypes: torch.Tensor | None = None,
              fillers: ng.Fillers | None = None) -> tuple[torch.Tensor, float]:
    """One batch: (loss, batch AUC of S). ``prototypes``: (K, M, D) keyword prototypes or None;
    ``fillers``: non-keyword material (None or empty: digits-only utterances, the old recipe)."""
    if fillers or cfg.long_context > 0:
        utts = [ng.compose(rng, recs, fillers, cfg.keyword_free, cfg.mixed, noise_bank=noise, p_long=cfg.long_context)
                for _ in range(cfg.batch_size)]
    else:
        utts = [dd.synthesize(rng, recs, noise_bank=noise) for _ in range(cfg.batch_size)]
    kws = keyword_sets(utts)
    draw = lambda ks: np.array([rng.choice(by_label[k]) for k in ks])
    if cfg.sampling == "all_pairs":
        inputs, groups = join_pairs(rng, utts, cfg.concat)
        feats, t = utterance_features(model, inputs, rng, cfg.warp, cfg.spec_augment)
        labels = np.repeat(np.arange(len(dd.KEYWORDS)), cfg.images_per_keyword)
        img = shift_images(rng, images[draw(labels)])
        n_valid = model.n_valid(t)
        pixels, frames = model.image(img), model.audio(feats, n_valid)
        if len(inputs) < len(utts):
            frames, n_valid = split_frames(frames, n_valid, groups, len(utts), model.preset.front_end)
        s, _, _ = localising_attention(pixels, frames, n_valid)
        target = torch.from_numpy(all_pairs_targets(labels, kws))
        loss = pair_loss(2 * s - 1, target)
        if prototypes is not None:
            k = prototypes.shape[0]
            s_pa, _, _ = localising_attention(prototypes, frames, n_valid)
            loss = loss + pair_loss(2 * s_pa - 1, torch.from_numpy(all_pairs_targets(np.arange(k), kws)))
            # the images against the prototypes, which stand in for utterances of one keyword each
            s_ip, _, _ = localising_attention(pixels, prototypes, torch.full((k,), prototypes.shape[1]))
            loss = loss + pair_loss(2 * s_ip - 1, torch.from_numpy(all_pairs_targets(labels, [{j} for j in range(k)])))
        return loss, batch_auc(s, target)
    # paper: per anchor utterance a positive and a negative image; per positive image a negative utterance
    feats, t = utterance_features(model, utts, rng, cfg.warp, cfg.spec_augment)
    pos, neg = pick_positive(rng, kws), pick_negative(rng, kws, len(dd.KEYWORDS))
    img = shift_images(rng, images[np.concatenate([draw(pos), draw(neg)])])
    s, _, _ = model.score(img, feats, t)
    b = cfg.batch_size
    idx = torch.arange(b)
    s_pos, s_neg_img = s[idx, idx], s[b + idx, idx]
    # negative utterance for positive image i: another utterance in the batch without keyword pos[i]
    neg_utt = [next((j for j in rng.permutation(b) if pos[i] not in kws[j]), None) for i in range(b)]
    keep = torch.tensor([j is not None for j in neg_utt])
    s_neg_utt = s[idx, torch.tensor([j if j is not None else 0 for j in neg_utt])][keep]
    ones = lambda x, v: torch.full_like(x, v)
    loss = (pair_loss(2 * s_pos - 1, ones(s_pos, 1.0)) + pair_loss(2 * s_neg_img - 1, ones(s_neg_img, -1.0))
            + pair_loss(2 * s_neg_utt - 1, ones(s_neg_utt, -1.0)))
    return loss, float((s_pos > s_neg_img).float().mean())


@torch.no_grad()
def choose_threshold(model: VPKLModel, data: str, seed: int, n_utts: int,
                     held_out: str | None = dd.HELD_OUT_SPEAKER) -> tuple[float, dict]:
    """Best-F1 detection threshold on the validation split, with queries averaged per keyword."""
    from vpkl.evaluation.metrics import best_threshold
    model.eval()
    rng = np.random.default_rng(dd.split_seed("val", seed))
    recs = dd.load_fsdd(data, "val", held_out)
    utts = [dd.synthesize(rng, recs) for _ in range(n_utts)]
    images, labels = dd.digit_images("val")
    x = image_tensor(images, model.preset)
    emb = model.image(x)
    queries = torch.stack([emb[torch.from_numpy(labels == k)][:5].mean(0) for k in range(len(dd.KEYWORDS))])
    scores, truth = [], []
    for i in range(0, n_utts, 32):
        chunk = utts[i:i + 32]
        feats, t = utterance_features(model, chunk)
        n_valid = model.n_valid(t)
        s, _, _ = localising_attention(queries, model.audio(feats, n_valid), n_valid)
        scores.append(s.T.numpy())
        truth += [[k in kw for k in range(len(dd.KEYWORDS))] for kw in keyword_sets(chunk)]
    thr, f1 = best_threshold(np.concatenate(scores).ravel(), np.array(truth).ravel())
    return thr, {"val_detection_f1": f1}


def train(cfg: TrainConfig, preset: str = "digits") -> dict:
    """Train, choose the threshold, write the checkpoint; returns a summary dict."""
    if cfg.sampling not in SAMPLINGS:
        raise ValueError(f"sampling must be one of {SAMPLINGS}, got {cfg.sampling!r}")
    if not 0.0 <= cfg.concat <= 1.0:
        raise ValueError(f"concat must be a probability in [0, 1], got {cfg.concat}")
    if cfg.concat > 0 and cfg.sampling != "all_pairs":
        raise ValueError(f"concat only works with sampling 'all_pairs', got {cfg.sampling!r}")
    pair_loss = PairLoss(cfg.loss)
    torch.set_num_threads(cfg.threads)
    rng = seed_everything(cfg.seed)
    model = build_model(preset)
    if not 0.0 <= cfg.long_context <= 1.0:
        raise ValueError(f"long_context must be a share in [0, 1], got {cfg.long_context}")
    if not (0.0 <= cfg.keyword_free and 0.0 <= cfg.mixed and cfg.keyword_free + cfg.mixed <= 1.0):
        raise ValueError(f"keyword_free and mixed must be shares adding to at most 1, got {cfg.keyword_free}, {cfg.mixed}")
    recs = dd.load_fsdd(cfg.data, "train", cfg.held_out_speaker)
    real = [r.samples for r in recs]
    if cfg.speed_perturb:
        recs = dd.speed_perturb(recs)
    fillers = ng.Fillers()
    if cfg.keyword_free + cfg.mixed > 0:
        fillers.words = ng.speech_commands(cfg.data, "train")
    if cfg.synth:
        texts, synth_digits = ng.synthetic(cfg.synth, "train")
        recs = recs + synth_digits
        if cfg.keyword_free + cfg.mixed > 0:
            fillers.texts = texts
    if cfg.reversed_speech and cfg.keyword_free + cfg.mixed > 0:
        fillers.reversed = ng.reversed_speech(real + fillers.words)
    imgs, labels = dd.digit_images("train")
    if cfg.query_styles:
        images, labels = styled_images(imgs, labels, model.preset, cfg.seed)
    else:
        images = image_tensor(imgs, model.preset)
    by_label = {k: np.flatnonzero(labels == k) for k in range(len(dd.KEYWORDS))}
    noise = dd.NoiseBank(rng)
    prototypes = None
    if cfg.prototypes and cfg.sampling == "all_pairs":
        with torch.no_grad():
            m = model.image.eval()(images[:1]).shape[1]
        prototypes = torch.nn.Parameter(torch.randn(len(dd.KEYWORDS), m, model.preset.embed_dim))
    extra = list(pair_loss.parameters()) + ([prototypes] if prototypes is not None else [])
    opt = torch.optim.Adam(list(model.parameters()) + extra, lr=cfg.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.05,
                                                final_div_factor=20)
    t0, ema, auc = time.time(), None, 0.5
    model.train()
    bar = tqdm(range(cfg.steps), desc="train", unit="step")
    for _ in bar:
        loss, a = step_loss(model, cfg, rng, recs, images, by_label, noise, pair_loss, prototypes, fillers)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        sched.step()
        ema = float(loss.detach()) if ema is None else 0.98 * ema + 0.02 * float(loss.detach())
        auc = 0.95 * auc + 0.05 * a
        bar.set_postfix(loss=f"{ema:.3f}", auc=f"{auc:.3f}")
    thr, val = choose_threshold(model, cfg.data, cfg.seed, cfg.val_utterances, cfg.held_out_speaker)
    summary = {"train_seconds": round(time.time() - t0, 1), "final_loss": ema, "threshold": thr, **val}
    save_checkpoint(model, cfg.out, threshold=thr, keywords=list(dd.KEYWORDS), train=vars(cfg), summary=summary)
    return summary
