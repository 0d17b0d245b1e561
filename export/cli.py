"""`vpkl-export CKPT --out BUNDLE`: write a model bundle and check it against PyTorch."""
from __future__ import annotations

import glob
import json
import os
import sys

from vpkl.cli.common import OneLineParser
from vpkl.runtime.demo import EXAMPLES as _EXAMPLES
from vpkl.runtime.errors import VpklInputError


def main(argv=None) -> int:
    p = OneLineParser(prog="vpkl-export", description="Export a vpkl checkpoint to an ONNX bundle.")
    p.add_argument("checkpoint", help="checkpoint written by `vpkl train`")
    p.add_argument("--out", required=True, help="bundle folder to write")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.add_argument("--fp16", action="store_true",
                   help="fp16 image and audio graphs (weights in fp16; inputs and outputs stay float32)")
    p.add_argument("--check-audio", nargs="+", default=None,
                   help="real utterances for the parity check (default: the shipped examples)")
    p.add_argument("--check-images", nargs="+", default=None,
                   help="real images for the parity check (default: the shipped example queries)")
    a = p.parse_args(argv)
    audio = a.check_audio or sorted(glob.glob(os.path.join(_EXAMPLES, "*.wav")))
    images = a.check_images or sorted(glob.glob(os.path.join(_EXAMPLES, "queries", "*.png")))
    try:
        if not audio or not images:
            raise VpklInputError("parity check: no real inputs found; pass --check-audio and --check-images")
        from vpkl.export.onnx_export import export_bundle
        diffs = export_bundle(a.checkpoint, a.out, audio, images, force=a.force, fp16=a.fp16)
    except VpklInputError as e:
        print(f"vpkl-export: error: {e}", file=sys.stderr)
        return 2
    except RuntimeError as e:
        print(f"vpkl-export: error: {e}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as e:  # the export extra is not installed: say so in one line
        from vpkl.cli.extras import exit_missing
        return exit_missing("vpkl-export", e)
    print(f"wrote {a.out}; parity on {len(audio)} utterances x {len(images)} images: "
          + json.dumps({k: float(f"{v:.2e}") for k, v in diffs.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
