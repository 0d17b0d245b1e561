"""The ``vpkl`` command: demo, detect, evaluate, make-dataset, train.

Runtime commands (demo, detect, evaluate) never import torch. Bad input ends in one line
``vpkl: error: <what> `` on stderr and exit code 2.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from vpkl.runtime.errors import VpklInputError

DEFAULT_DATA = os.environ.get("VPKL_DATA", os.path.join("..", "shared", "data"))


def cmd_train(a) -> int:
    # Idle OpenMP threads sleep instead of spinning: with another job on the same cores,
    # spinning made training steps ~100x slower (measured). Must be set before torch loads.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from vpkl.training.train import TrainConfig, train
    if a.recipe != "digits":
        raise VpklInputError(f"--recipe: only 'digits' has a training recipe, got {a.recipe!r}")
    if os.path.isdir(a.out):
        raise VpklInputError(f"{a.out}: is a folder, expected a checkpoint file path")
    if os.path.exists(a.out) and not a.force:
        raise VpklInputError(f"{a.out}: already exists; pass --force to overwrite it")
    parent = os.path.dirname(os.path.abspath(a.out))
    if not os.path.isdir(parent):
        raise VpklInputError(f"{a.out}: the folder {parent} does not exist")
    for name, v in (("--steps", a.steps), ("--batch-size", a.batch_size), ("--threads", a.threads)):
        if v < 1:
            raise VpklInputError(f"{name}: expected a positive integer, got {v}")
    if not a.lr > 0:
        raise VpklInputError(f"--lr: expected a positive number, got {a.lr}")
    if not 0.0 <= a.concat <= 1.0:
        raise VpklInputError(f"--concat: expected a probability in [0, 1], got {a.concat}")
    if a.concat > 0 and a.sampling != "all_pairs":
        raise VpklInputError(f"--concat: only works with --sampling all_pairs, got --sampling {a.sampling}")
    cfg = TrainConfig(data=a.data, out=a.out, steps=a.steps, batch_size=a.batch_size, lr=a.lr,
                      seed=a.seed, sampling=a.sampling, loss=a.loss,
                      prototypes=not a.no_prototypes, threads=a.threads, concat=a.concat)
    print(json.dumps(train(cfg), indent=2))
    return 0


def _load(bundle_path: str):
    from vpkl.runtime.bundle import Bundle
    return Bundle.load(bundle_path)


def _threshold(a, bundle) -> float:
    t = bundle.threshold if a.threshold is None else a.threshold
    if not 0.0 <= t <= 1.0:
        raise VpklInputError(f"--threshold: expected a score in [0, 1], got {t}")
    return t


def format_table(name: str, results) -> str:
    """Readable table of per-keyword results for one utterance (time = argmax frame of aud_att)."""
    lines = [name, f"  {'keyword':<10} {'score':>6} {'thr':>6}  {'detected':<8} {'at (s)':>7} {'frame':>5}"]
    for r in results:
        lines.append(f"  {r.keyword:<10} {r.score:6.3f} {r.threshold:6.3f}  {'YES' if r.detected else 'no':<8} "
                     f"{r.time_s:7.2f} {r.frame:>5}")
    return "\n".join(lines)


def cmd_detect(a) -> int:
    from vpkl.runtime.detect import detect
    from vpkl.runtime.queries import enrol, group_by_keyword
    if a.attention and not a.json:
        raise VpklInputError("--attention: only with --json (the table has no room for per-frame aud_att)")
    bundle = _load(a.bundle)
    queries = enrol(bundle, group_by_keyword(a.query, strict=False))
    thr = _threshold(a, bundle)
    out = []
    for path in a.audio:
        res = detect(bundle, path, queries, thr, name=path)
        if a.json:
            out.append({"audio": path, "results": [r.to_dict(a.attention) for r in res]})
        else:
            print(format_table(path, res))
    if a.json:
        print(json.dumps(out if len(out) > 1 else out[0], indent=2))
    return 0


def cmd_evaluate(a) -> int:
    from vpkl.evaluation.evaluate import evaluate
    from vpkl.evaluation.manifest import read_manifest
    from vpkl.runtime.queries import enrol, folder_images
    bundle = _load(a.bundle)
    entries = read_manifest(a.manifest)
    queries = enrol(bundle, folder_images(a.queries))
    unqueried = sorted({w for e in entries for w, _, _ in e.words} - set(queries.keywords))
    if unqueried:
        print(f"vpkl evaluate: not scored, no query image in {a.queries}: {', '.join(unqueried)}", file=sys.stderr)
    progress = None
    if not a.json and sys.stderr.isatty():
        from vpkl.runtime.progress import progress
    res = evaluate(bundle, entries, queries, _threshold(a, bundle), progress)
    if a.json:
        print(json.dumps(res, indent=2))
        return 0
    n, k = res["utterances"], len(res["keywords"])
    print(f"{n} utterance{'s' * (n != 1)} x {k} keyword{'s' * (k != 1)}, threshold {res['threshold']:.3f}")
    rows = [("overall", res["overall"])] + list(res.get("by_snr", {}).items())
    print(f"{'':<12} {'pairs':>6} | {'det P':>6} {'det R':>6} {'det F1':>6} | "
          f"{'loc P':>6} {'loc R':>6} {'loc F1':>6} {'loc acc':>7}")
    for name, m in rows:
        d, l = m["detection"], m["localisation"]
        print(f"{name:<12} {m['pairs']:>6} | {d['precision']:6.3f} {d['recall']:6.3f} {d['f1']:6.3f} | "
              f"{l['precision']:6.3f} {l['recall']:6.3f} {l['f1']:6.3f} {l['accuracy']:7.3f}")
    return 0


def cmd_demo(a) -> int:
    from vpkl.runtime.demo import run_demo
    return run_demo(json_out=a.json)


def cmd_make_dataset(a) -> int:
    from vpkl.training.make_dataset import make_dataset, write_examples
    if a.examples:
        print(json.dumps(write_examples(a.data, a.out, a.examples), indent=2))
        return 0
    print(json.dumps(make_dataset(a.data, a.out, a.val, a.test, a.per_keyword, a.seed, a.force), indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vpkl", description="Visually prompted keyword localisation.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model with a recipe (needs the [train] extra)")
    t.add_argument("--recipe", default="digits")
    t.add_argument("--data", default=DEFAULT_DATA, help="data folder (default: $VPKL_DATA or ../shared/data)")
    t.add_argument("--out", required=True, help="checkpoint to write")
    t.add_argument("--steps", type=int, default=1000)
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    t.add_argument("--sampling", choices=["all_pairs", "paper"], default="all_pairs",
                   help="which image-utterance pairs each step scores (paper: per-anchor keyword sampling)")
    t.add_argument("--loss", choices=["bce", "mse"], default="bce",
                   help="bce: sigmoid cross-entropy on a learnt scale of the cosine; mse: the paper's loss")
    t.add_argument("--no-prototypes", action="store_true",
                   help="all_pairs: do not learn keyword prototypes as an extra target")
    t.add_argument("--concat", type=float, default=0.0, metavar="P",
                   help="all_pairs: chance that two utterances are joined into one input of the audio branch "
                        "(default 0, off)")
    t.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    t.set_defaults(func=cmd_train)

    d = sub.add_parser("detect", help="is the keyword of each query image spoken in the audio, and where?")
    d.add_argument("--bundle", required=True, help="model bundle folder (vpkl-export)")
    d.add_argument("--query", action="append", required=True, metavar="IMAGE",
                   help="query image; repeat for several; {keyword}_x.png files of one keyword are averaged")
    d.add_argument("audio", nargs="+", help="audio file(s): WAV, FLAC, OGG, any rate, any channels")
    d.add_argument("--threshold", type=float, default=None, help="detection threshold on S (default: the bundle's)")
    d.add_argument("--json", action="store_true", help="JSON output")
    d.add_argument("--attention", action="store_true", help="with --json: include per-frame aud_att")
    d.set_defaults(func=cmd_detect)

    e = sub.add_parser("evaluate", help="detection and localisation metrics on a JSON-lines manifest")
    e.add_argument("--bundle", required=True)
    e.add_argument("--manifest", required=True)
    e.add_argument("--queries", required=True, help="folder of {keyword}_{anything}.png/jpg images")
    e.add_argument("--threshold", type=float, default=None)
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=cmd_evaluate)

    m = sub.add_parser("make-dataset", help="write the digits recipe's evaluation manifests and query folders")
    m.add_argument("--data", default=DEFAULT_DATA)
    m.add_argument("--out", required=True)
    m.add_argument("--val", type=int, default=400, help="validation utterances")
    m.add_argument("--test", type=int, default=500, help="test utterances (held-out speaker)")
    m.add_argument("--per-keyword", type=int, default=5, help="query images per keyword")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--force", action="store_true")
    m.add_argument("--examples", type=int, default=0, metavar="N",
                   help="instead, write the demo's N shipped examples (assets/examples layout)")
    m.set_defaults(func=cmd_make_dataset)

    g = sub.add_parser("demo", help="run the shipped digits model on the shipped examples")
    g.add_argument("--json", action="store_true")
    g.set_defaults(func=cmd_demo)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except VpklInputError as e:
        print(f"vpkl: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vpkl: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `vpkl demo | head -1`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
