"""Token heatmaps of a trained checkpoint (paper Figure 4): beta * r_t, token KL and masks per response token.

    python tune/heatmap.py --checkpoint runs/<run>/checkpoint_.../ [--pairs pairs.jsonl] [-n 3] [--out DIR]

Writes ``pair<i>.html`` (self-contained, hover for values) and ``pair<i>.png`` for each pair, by default into
``<checkpoint>/heatmaps/``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sparsepo.data import read_rows
from sparsepo.heatmap import checkpoint_heatmap_dir, write_heatmaps
from sparsepo.token_values import checkpoint_token_values


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True, help="a training checkpoint folder (holds policy/ and config.yaml)")
    ap.add_argument("--pairs", default=None, help="preference pairs file (default: the checkpoint's training data)")
    ap.add_argument("-n", type=int, default=3, help="number of pairs")
    ap.add_argument("--out", default=None, help="output folder (default: <checkpoint>/heatmaps/)")
    a = ap.parse_args(argv)
    maps = checkpoint_token_values(a.checkpoint, read_rows(a.pairs) if a.pairs else None, a.n)
    out = Path(a.out) if a.out else checkpoint_heatmap_dir(a.checkpoint)
    write_heatmaps(maps, out)
    print(f"wrote {len(maps)} heatmaps (HTML + PNG) to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
