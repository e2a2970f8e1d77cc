"""Text-to-code (paper 3.5, Table 2); same as ``sparsepo code`` (``sparsepo code --help`` lists every flag).

SFT model -> executed-solution pairs -> PO methods -> pass@k, one command.

    python tune/code.py                          # offline miniature: SmolLM2-135M, HumanEval subsets, CPU
    ray job submit --working-dir . -- python tune/code.py --paper --model <sft model> --mbpp mbpp \
        --storage-path s3://bucket/runs          # the paper's settings on a GPU cluster

Outputs go to ``<storage-path>/<name>/``: table2.csv and report.md (Table 2 layout, pair statistics, settings).
Pairs, the SFT model and the baseline evaluation are cached under ``<storage-path>/``; ``--resume`` continues an
interrupted sweep without rerunning finished trials.
"""

from __future__ import annotations

import os
import sys

# This script shares its name with the standard library's `code` module, which pdb (imported by torch) imports:
# keep tune/ off the import path, here and (Ray copies the driver's path) in every Ray worker.
if sys.path and os.path.realpath(sys.path[0]) == os.path.dirname(os.path.realpath(__file__)):
    del sys.path[0]

from sparsepo.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["code", *sys.argv[1:]]))
