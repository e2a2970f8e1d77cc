"""Token heatmaps of a trained checkpoint (paper Figure 4); same as ``sparsepo heatmap``.

    python tune/heatmap.py --checkpoint runs/<run>/checkpoint_.../ [--pairs pairs.jsonl] [-n 3] [--out DIR] [--check]

Writes ``pair<i>.html`` (self-contained, hover for values) and ``pair<i>.png`` for each pair, by default into
``<checkpoint>/heatmaps/``.
"""

import sys

from sparsepo.cli import main

if __name__ == "__main__":
    sys.exit(main(["heatmap", *sys.argv[1:]]))
