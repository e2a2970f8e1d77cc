"""Evaluate any causal LM (hub name, local folder, trainer checkpoint) on a suite, or compare finished runs.

    python evals/run.py --suite sentiment --model <policy> --ref <reference>
    python evals/run.py --suite code --model <model> --dataset humaneval --n-samples 10 --ks 1 10
    python evals/run.py --suite summarization --model <model> --data tldr.jsonl --nli-model <nli>
    python evals/run.py --suite openllm --model <model> --backend vllm
    python evals/run.py --compare runs/evals/sentiment/a runs/evals/sentiment/b
"""

import sys

from sparsepo.evaluation.cli import main

if __name__ == "__main__":  # vLLM starts worker processes with spawn
    sys.exit(main())
