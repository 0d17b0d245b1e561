"""Query enrolment: images of keywords -> per-keyword query embeddings, prepared for a scorer.

Several images of one keyword are averaged into one query (M x D), as in Nortje & Kamper
(SLT 2022, Sec. 5): the mean of their pixel embeddings. Enrolment happens once per query set
and scoring once per utterance (or streamed window), so :func:`enrol` also prepares the queries
for the bundle's scoring head (the native kernel's layout) and every score reuses that.
"""
from __future__ import annotations

import os
import re

import numpy as np

from .bundle import Bundle
from .errors import VpklInputError
from .images import read_image
from .scorer import PreparedQueries, frozen

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_KEYWORD = re.compile(r"^([A-Za-z][A-Za-z0-9'-]*)_.+$")


class QuerySet:
    """Enrolled queries: ``embeddings[k]`` (M, D) float32 is the query for ``keywords[k]``.

    Args:
        keywords: one name per query; embeddings: (K, M, D) float32 values (or a list of K
        (M, D) arrays), copied once; sources: keyword -> list of image names (for reports);
        scorer: a bundle's ``scorer`` to prepare them for (``bundle.scorer``), or None.
    Attributes:
        keywords, sources; embeddings: (K, M, D) float32, read-only for good (numpy refuses to
        make it writeable again), so prepared queries always match it; prepared:
        :class:`~vpkl.runtime.scorer.PreparedQueries` for ``scorer``, or None (then each score
        converts the queries afresh; :meth:`prepare` gives a prepared copy).
    Raises:
        VpklInputError: as many keywords as queries is required; embeddings of the wrong shape
            for the scorer's model, or with NaN or Inf (native scorer).
    """

    def __init__(self, keywords, embeddings, sources: dict | None = None, scorer=None):
        self.keywords, self.sources = list(keywords), dict(sources or {})
        self.embeddings = frozen(embeddings, "queries")
        if self.embeddings.ndim != 3 or len(self.embeddings) != len(self.keywords):
            raise VpklInputError(f"queries: {len(self.keywords)} keywords for embeddings of shape "
                                 f"{self.embeddings.shape}, expected ({len(self.keywords)}, M, D)")
        self.prepared: PreparedQueries | None = scorer.prepare(self.embeddings) if scorer is not None else None

    def __len__(self) -> int:
        return len(self.keywords)

    def __repr__(self) -> str:
        return f"QuerySet({self.keywords}, prepared for {self.prepared.scorer.name if self.prepared else 'no scorer'})"

    def prepare(self, bundle: Bundle) -> "QuerySet":
        """The same queries prepared for ``bundle``'s scorer (a new QuerySet; this one is unchanged)."""
        return QuerySet(self.keywords, self.embeddings, self.sources, bundle.scorer)


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
        QuerySet with keywords in the given order, prepared for ``bundle.scorer``.
    Raises:
        VpklInputError: no keyword, a keyword with no image, an unreadable image, an array of the
            wrong shape.
    """
    if not images:
        raise VpklInputError("queries: none given, expected {keyword: [images]} with at least one keyword")
    c, s = bundle.image.channels, bundle.image.size
    keywords, embs, sources = [], [], {}
    for kw, items in images.items():
        if not isinstance(kw, str) or not kw.strip():
            raise VpklInputError(f"query keyword {kw!r}: expected a non-empty name")
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
    return QuerySet(keywords, embs, sources, bundle.scorer)


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
    """A query folder -> {keyword: [paths]} of its ``{keyword}_{anything}.png|jpg|jpeg`` images.

    Other files, images named otherwise among them, are left out (``vpkl detect`` and ``stream``
    name them on stderr): a folder often holds a README or a stray photo.
    Raises:
        VpklInputError: not a folder, or no image named so in it.
    """
    if not os.path.exists(folder):
        raise VpklInputError(f"{folder}: no such query folder")
    if not os.path.isdir(folder):
        raise VpklInputError(f"{folder}: is a file, expected a folder of {{keyword}}_{{anything}}.png|jpg images")
    files = sorted(f for f in os.listdir(folder) if not f.startswith("."))
    images = [f for f in files if os.path.splitext(f)[1].lower() in IMAGE_SUFFIXES]
    imgs = [os.path.join(folder, f) for f in images if _KEYWORD.match(os.path.splitext(f)[0])]
    if not imgs:
        misnamed = f" (not named so: {', '.join(images[:5])})" if images else ""
        raise VpklInputError(f"{folder}: no query images (expected {{keyword}}_{{anything}}.png or .jpg){misnamed}")
    return group_by_keyword(imgs, strict=True)
