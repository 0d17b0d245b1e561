"""Where a new bundle may be written: never over anything but an old bundle (no torch needed)."""
from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager

from vpkl.runtime.bundle import BUNDLE_FILES, CALIBRATION_FILES, OLD_BUNDLE_FILES
from vpkl.runtime.errors import VpklInputError


def check_out_dir(out_dir: str, protected: list[str], force: bool) -> None:
    """Refuse an output path that would lose anything but an old bundle.

    ``force`` replaces an existing *bundle* folder (only bundle files in it, of this format or an
    older one, and calibration tables); it never deletes a file, the current folder, a folder
    holding other files, or one holding or being one of the ``protected`` paths (the checkpoint
    or the bundle being read).

    Raises:
        VpklInputError: naming ``out_dir`` and what it would lose.
    """
    if os.path.islink(out_dir):
        raise VpklInputError(f"{out_dir}: is a symbolic link; give the folder it points to, or another --out")
    if not os.path.exists(out_dir):
        return
    if not os.path.isdir(out_dir):
        raise VpklInputError(f"{out_dir}: exists and is not a folder; choose another --out")
    if not force:
        raise VpklInputError(f"{out_dir}: already exists; pass --force to replace it")
    here = os.path.realpath(out_dir)
    mine = {os.path.realpath(p) for p in protected} | {os.path.dirname(os.path.realpath(p)) for p in protected}
    if here == os.path.realpath(os.getcwd()) or here in mine:
        raise VpklInputError(f"{out_dir}: is the current folder or holds or is an input "
                             f"({', '.join(protected)}); choose another --out")
    others = sorted(set(os.listdir(out_dir)) - set(BUNDLE_FILES) - set(OLD_BUNDLE_FILES) - set(CALIBRATION_FILES))
    if others:
        raise VpklInputError(f"{out_dir}: is not a bundle (it holds {', '.join(others[:3])}); "
                             "--force only replaces a bundle folder")


@contextmanager
def building(out_dir: str, prefix: str):
    """Build a bundle in a temporary folder next to ``out_dir`` (yielded), then move it into place.

    When the block ends without an error, the files get the permissions of a normally made
    folder (mkdtemp's are private) and the folder replaces ``out_dir`` (an old bundle there is
    removed just before: check it with :func:`check_out_dir` first). The temporary folder is
    removed in every case, so a failed build leaves nothing half-written.
    """
    parent = os.path.dirname(os.path.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=prefix, dir=parent)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        for f in os.listdir(tmp):
            os.chmod(os.path.join(tmp, f), 0o666 & ~umask)
        os.chmod(tmp, 0o777 & ~umask)
        if os.path.exists(out_dir):
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp)
