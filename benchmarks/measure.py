"""One measurement in its own process, so that its peak resident memory is its own.

  python -m benchmarks.measure --system=ours --dataset=amusic --epochs=2 --out=result.json

`benchmarks.run` starts one of these per measurement; the result is a JSON object.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import sys


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--system", choices=("ours", "recbole"), required=True)
  parser.add_argument("--dataset", required=True)
  parser.add_argument("--epochs", type=int, default=2)
  parser.add_argument("--max-steps", type=int, default=None, help="steps timed per epoch")
  parser.add_argument("--layers", default="64,64,64", help="our tower widths")
  parser.add_argument("--first-layer", default="auto")
  parser.add_argument(
    "--skip-evaluation", action="store_true", help="ours: train on every rating, time no evaluation"
  )
  parser.add_argument("--optimizer", default="adam", help="ours: train.optimizer")
  parser.add_argument("--threads", type=int, default=None, help="RecBole: torch threads")
  parser.add_argument("--root", default=None, help="data folder (else $DMF_DATA_DIR)")
  parser.add_argument("--out", required=True)
  args = parser.parse_args(argv)
  logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
  if args.system == "ours":
    from benchmarks import ours

    result = ours.measure(
      args.dataset,
      epochs=args.epochs,
      max_steps=args.max_steps,
      layers=tuple(int(w) for w in args.layers.split(",")),
      first_layer=args.first_layer,
      evaluate=not args.skip_evaluation,
      root=args.root,
      optimizer=args.optimizer,
    )
  else:
    from benchmarks import recbole_peer

    layers = {int(w) for w in args.layers.split(",")}
    if len(layers) != 1:
      parser.error("RecBole's DMF is compared at equal widths: give --layers=W,W,W")
    result = recbole_peer.measure(
      args.dataset,
      epochs=args.epochs,
      max_steps=args.max_steps,
      width=layers.pop(),
      threads=args.threads,
      root=args.root,
    )
  # ru_maxrss is in KiB on Linux.
  result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  result["dataset"] = args.dataset
  with open(args.out, "w") as f:
    json.dump(result, f, indent=1)


if __name__ == "__main__":
  main()
