"""Sentiment-control reward-KL frontier (paper 3.2); same as ``sparsepo frontier`` (``sparsepo frontier --help``).

    python tune/frontier.py                                   # offline default: SmolLM2-135M, Pang & Lee, CPU
    ray job submit --working-dir . -- python tune/frontier.py --paper --model <sft model> --use-gpu
"""

import sys

from sparsepo.cli import main

if __name__ == "__main__":
    sys.exit(main(["frontier", *sys.argv[1:]]))
