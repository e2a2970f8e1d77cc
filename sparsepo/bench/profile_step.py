"""Profile one training step of ours (torch.profiler) on a real batch of review pairs: where the time goes.

    sparsepo bench profile_step [--method dpo] [--model smollm2] [--batch-size 4] [--max-length 128] [--no-bf16]
                                 [--log-kl] [--chunk 1024] [--rows 25]

The batch is the first ``--batch-size`` pairs of ``offline:review-pairs``, collated as the trainer does; the step
is reference pass, policy pass, loss, backward and AdamW under the trainer's autocast (``mixed_precision``).
Prints the profiler's table of operators by self CPU time (on CUDA: by CUDA time) after two warm-up steps.
"""

from __future__ import annotations

import argparse
import sys
import time


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--method", default="dpo")
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--chunk", type=int, default=1024)
    ap.add_argument("--no-bf16", action="store_true")
    ap.add_argument("--log-kl", action="store_true")
    ap.add_argument("--rows", type=int, default=25)
    args = ap.parse_args(argv)

    import torch
    from torch.profiler import ProfilerActivity, profile

    from sparsepo.bench.common import make_step
    from sparsepo.config import load_config
    from sparsepo.data import PreferenceCollator, load_preference_data
    from sparsepo.hardware import mixed_precision
    from sparsepo.losses import get_loss
    from sparsepo.masks import MaskConfig, model_dims
    from sparsepo.models import build_policy, load_causal_lm, load_tokenizer
    from sparsepo.preference_model import PreferenceModel, Reference

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cfg = load_config(None, [f"model.name={args.model}", "data.path=offline:review-pairs",
                             f"data.limit={args.batch_size}", f"data.max_length={args.max_length}",
                             f"data.max_prompt_length={args.max_length // 2}"])
    tokenizer = load_tokenizer(args.model)
    data, _ = load_preference_data(cfg.data, tokenizer)
    batch = {k: v.to(device) for k, v in PreferenceCollator(tokenizer.pad_token_id)(list(data)).items()}
    torch.manual_seed(0)
    policy = build_policy(cfg, device)
    ref = None
    if get_loss(args.method).needs_reference:
        ref = Reference(load_causal_lm(args.model).to(device), args.method, MaskConfig())
    model = PreferenceModel(policy, args.method, mask=MaskConfig(), ref_dims=model_dims(policy),
                            chunk_size=args.chunk, log_kl=args.log_kl).to(device).train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-6)
    autocast = mixed_precision(device, not args.no_bf16)

    step = make_step(model, ref, opt, batch, autocast)

    for _ in range(2):
        step()
    t = time.perf_counter()
    step()
    print(f"{args.method}: one step {time.perf_counter() - t:.3f} s, batch {tuple(batch['input_ids'].shape)}, "
          f"{int(batch['loss_mask'].sum())} response tokens, threads {torch.get_num_threads()}, autocast {autocast is not None}")
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        step()
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=key, row_limit=args.rows))

    return 0


if __name__ == "__main__":
    sys.exit(main())
