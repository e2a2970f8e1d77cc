"""Summary quality control (paper 3.4, Figure 5); same as ``sparsepo summarization`` (``--help`` lists every flag).

TL;DR pairs (or the offline miniature) -> SFT -> PO methods (LoRA) -> the summarisation suite at several
temperatures, one command.

    python tune/summarization.py                  # offline miniature: SmolLM2-135M, Pang & Lee openings, CPU
    ray job submit --working-dir . -- python tune/summarization.py --paper \
        --storage-path s3://bucket/runs           # the paper's settings on a GPU cluster

Outputs go to ``<storage-path>/<name>/``: figure5.csv, figure5.png and report.md (Figure 5 layout: each metric
against temperature per method). The SFT model, pairs and the baseline evaluation are cached under
``<storage-path>/``; ``--resume --name NAME`` continues an interrupted sweep without rerunning finished trials.
"""

from __future__ import annotations

import sys

from sparsepo.cli import main

if __name__ == "__main__":
    sys.exit(main(["summarization", *sys.argv[1:]]))
