"""Query enrolment: images of keywords -> cached per-keyword query embeddings.

Several images of one keyword are averaged into one query (M x D), as in Nortje & Kamper
(SLT 2022, Sec. 5): the mean of their pixel embeddings.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

import numpy as np

from .bundle import Bundle
from .errors import VpklInputError
from .images import read_image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_KEYWORD = re.compile(r"^([A-Za-z][A-Za-z0-9'-]*)_.+$")


@dataclass
class QuerySet:
    """Enrolled queries: ``embeddings[k]`` (M, D) float32 is the query for ``keywords[k]``.

    ``embeddings`` is kept as a read-only float32 copy: the native scorer lays the queries out
    once per QuerySet, so they must not change (make a new QuerySet instead).
    """

    keywords: list
    embeddings: np.ndarray                       # (K, M, D) float32
    sources: dict = field(default_factory=dict)  # keyword -> list of image names

    def __post_init__(self):
        e = self.embeddings
        if not (isinstance(e, np.ndarray) and e.dtype == np.float32 and e.base is None and not e.flags.writeable):
            e = np.array(e, dtype=np.float32)  # a copy: the caller's array may change
            e.flags.writeable = False
        self.embeddings = e

    def __len__(self) -> int:
        return len(self.keywords)


def keyword_of(path: str) -> str:
    """``{keyword}_{anything}.png`` -> keyword; raises VpklInputError for other names."""
    name = os.path.basename(path)
    stem, ext = os.path.splitext(name)
    m = _KEYWORD.match(stem)
    if ext.lower() not in IMAGE_SUFFIXES or not m:
        raise VpklInputError(f"{path}: query image names must look like {{keyword}}_{{anything}}"
                             f"{{{','.join(IMAGE_SUFFIXES)}}}, e.g. seven_01.png")
    return m[1].lower()


def enrol(bundle: Bundle, images: dict) -> QuerySet:
    """Embed query images and average them per keyword.

    Args:
        images: keyword -> list of image paths or preprocessed (C, H, W) float32 arrays.
    Returns:
        QuerySet with keywords in the given order.
    Raises:
        VpklInputError: a keyword with no image, an unreadable image, an array of the wrong shape.
    """
    c, s = bundle.image.channels, bundle.image.size
    keywords, embs, sources = [], [], {}
    for kw, items in images.items():
        if not items:
            raise VpklInputError(f"query {kw!r}: no images")
        arrays = []
        for it in items:
            if isinstance(it, np.ndarray):
                if it.shape != (c, s, s):
                    raise VpklInputError(f"query {kw!r}: image array of shape {it.shape}, expected ({c}, {s}, {s})")
                arrays.append(it.astype(np.float32))
            else:
                arrays.append(read_image(it, bundle.image))
        keywords.append(kw)
        embs.append(bundle.embed_images(np.stack(arrays)).mean(axis=0))
        sources[kw] = [os.path.basename(os.fspath(i)) if not isinstance(i, np.ndarray) else "<array>" for i in items]
    emb = np.stack(embs).astype(np.float32, copy=False)  # new, so QuerySet keeps it without copying
    emb.flags.writeable = False
    return QuerySet(keywords, emb, sources)


def group_by_keyword(paths: list[str], strict: bool = True) -> dict:
    """Image paths -> {keyword: [paths]} from ``{keyword}_...`` names.

    With ``strict=False`` (single ``--query`` files), a name without ``_`` uses its stem.
    """
    out: dict = {}
    for p in paths:
        try:
            kw = keyword_of(p)
        except VpklInputError:
            if strict:
                raise
            kw = os.path.splitext(os.path.basename(p))[0].lower()
        out.setdefault(kw, []).append(p)
    return out


def folder_images(folder: str) -> dict:
    """A query folder -> {keyword: [paths]}.

    Raises:
        VpklInputError: not a folder, no images in it, or a badly named image.
    """
    if not os.path.exists(folder):
        raise VpklInputError(f"{folder}: no such query folder")
    if not os.path.isdir(folder):
        raise VpklInputError(f"{folder}: is a file, expected a folder of {{keyword}}_{{anything}}.png|jpg images")
    files = sorted(f for f in os.listdir(folder) if not f.startswith("."))
    imgs = [os.path.join(folder, f) for f in files if os.path.splitext(f)[1].lower() in IMAGE_SUFFIXES]
    if not imgs:
        raise VpklInputError(f"{folder}: no query images (expected {{keyword}}_{{anything}}.png or .jpg)")
    return group_by_keyword(imgs, strict=True)
