"""Dialogue, helpfulness and harmlessness (paper 3.3, Table 1); same as ``sparsepo dialogue`` (``--help`` lists
every flag).

HH-RLHF transcripts -> SFT on the chosen responses -> PO methods -> Open LLM Leaderboard, one command.

    python tune/dialogue.py                      # offline miniature: SmolLM2-135M, review dialogues, local tasks
    ray job submit --working-dir . -- python tune/dialogue.py --paper \
        --storage-path s3://bucket/runs          # the paper's settings on a GPU cluster

Outputs go to ``<storage-path>/<name>/``: table1.csv and report.md (Table 1 layout, settings). Data, the SFT model
and every leaderboard evaluation are cached under ``<storage-path>/``; ``--resume`` continues an interrupted
sweep without rerunning finished trials.
"""

from __future__ import annotations

import sys

from sparsepo.cli import main

if __name__ == "__main__":
    sys.exit(main(["dialogue", *sys.argv[1:]]))
