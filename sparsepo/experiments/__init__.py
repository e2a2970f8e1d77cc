"""The paper's experiments, one subpackage each, registered by name (adding one touches only ``EXPERIMENTS``).

Every experiment has the same shape: a config dataclass (every field a flag of ``sparsepo <name>``), stage
functions whose intermediate artifacts are cached by a hash of what determines them, a Ray Tune sweep of the
PO methods, ``--storage-path``/``--name``/``--resume``, a ``--paper`` preset for a GPU cluster, and one report
in the paper's own layout.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Experiment:
    """Where an experiment's parts live, as ``module:attribute`` (imported only when the command runs)."""

    config: str  # the config dataclass
    run: str  # run(cfg) -> output files
    paper: str  # paper(cfg) -> cfg with the paper's settings (a GPU cluster's)
    help: str
    usage: str = ""  # example lines for --help


EXPERIMENTS: dict[str, Experiment] = {
    "frontier": Experiment(
        config="sparsepo.experiments.sentiment.frontier:FrontierConfig",
        run="sparsepo.experiments.sentiment.frontier:run_frontier",
        paper="sparsepo.experiments.sentiment.frontier:paper_config",
        help="sentiment control: the reward-KL frontier (paper 3.2, Figures 2-3)",
        usage="sparsepo frontier                      # offline default: SmolLM2-135M, Pang & Lee, CPU\n"
        "ray job submit --working-dir . -- sparsepo frontier --paper --model <sft> --storage-path s3://bucket/runs",
    ),
    "code": Experiment(
        config="sparsepo.experiments.code.experiment:CodeConfig",
        run="sparsepo.experiments.code.experiment:run_code",
        paper="sparsepo.experiments.code.experiment:paper_config",
        help="text to code: executed-solution pairs, PO methods, pass@k (paper 3.5, Table 2)",
        usage="sparsepo code                          # offline miniature: SmolLM2-135M, HumanEval subsets, CPU\n"
        "ray job submit --working-dir . -- sparsepo code --paper --model <sft> --mbpp mbpp --storage-path s3://b/runs",
    ),
    "dialogue": Experiment(
        config="sparsepo.experiments.dialogue.experiment:DialogueConfig",
        run="sparsepo.experiments.dialogue.experiment:run_dialogue",
        paper="sparsepo.experiments.dialogue.experiment:paper_config",
        help="dialogue: HH-RLHF SFT, PO methods, Open LLM Leaderboard (paper 3.3, Table 1)",
        usage="sparsepo dialogue                      # offline miniature: SmolLM2-135M, review dialogues, local tasks\n"
        "ray job submit --working-dir . -- sparsepo dialogue --paper --storage-path s3://bucket/runs",
    ),
    "summarization": Experiment(
        config="sparsepo.experiments.summarization.experiment:SummarizationConfig",
        run="sparsepo.experiments.summarization.experiment:run_summarization",
        paper="sparsepo.experiments.summarization.experiment:paper_config",
        help="summary quality: TL;DR pairs, PO methods with LoRA, metrics vs temperature (paper 3.4, Figure 5)",
        usage="sparsepo summarization                 # offline miniature: SmolLM2-135M, Pang & Lee openings, CPU\n"
        "ray job submit --working-dir . -- sparsepo summarization --paper --storage-path s3://bucket/runs",
    ),
}
