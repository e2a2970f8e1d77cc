"""Response-level KL estimates against a naive full-softmax computation on tiny models."""

import torch

from sparsepo.evaluation.kl import response_kl
from tests.sparsepo.training.test_forward import tiny


def naive(policy, ref, prompt, completion):
    ids = torch.tensor([prompt + completion])
    lp = policy(input_ids=ids).logits[0, :-1].double().log_softmax(-1)
    lr = ref(input_ids=ids).logits[0, :-1].double().log_softmax(-1)
    kl, mc = 0.0, 0.0
    for t in range(len(prompt) - 1, len(prompt) + len(completion) - 1):
        y = ids[0, t + 1]
        kl += float((lp[t].exp() * (lp[t] - lr[t])).sum())
        mc += float(lp[t, y] - lr[t, y])
    return kl, mc


def test_exact_and_monte_carlo_kl_match_naive_and_vanish_for_identical_models():
    policy, ref, same = tiny("llama", 0), tiny("llama", 1), tiny("llama", 0)
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(0, 97, (n,), generator=g).tolist() for n in (3, 5, 4)]
    comps = [torch.randint(0, 97, (n,), generator=g).tolist() for n in (6, 2, 4)]
    got = response_kl(policy, ref, prompts, comps, pad_token_id=0, batch_size=2, chunk_size=3)
    for row, p, c in zip(got, prompts, comps, strict=True):
        kl, mc = naive(policy, ref, p, c)
        assert row["tokens"] == len(c)
        assert abs(row["kl"] - kl) < 1e-9 and abs(row["kl_mc"] - mc) < 1e-9
        assert row["kl"] > 0
    zero = response_kl(policy, same, prompts, comps, pad_token_id=0)
    assert all(abs(r["kl"]) < 1e-12 and abs(r["kl_mc"]) < 1e-12 for r in zero)


def test_kl_to_a_lora_policys_disabled_adapters_equals_kl_to_its_base():
    import copy

    from peft import LoraConfig, get_peft_model

    from sparsepo.training.forward import AdaptersOff

    base = tiny("llama", 0)
    torch.manual_seed(1)
    policy = get_peft_model(copy.deepcopy(base), LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))
    prompts, comps = [[1, 2, 3], [4, 5]], [[6, 7, 8, 9], [10, 11]]
    shared = response_kl(policy, AdaptersOff(policy), prompts, comps, pad_token_id=0)
    separate = response_kl(policy, base, prompts, comps, pad_token_id=0)
    for a, b in zip(shared, separate, strict=True):
        assert a["kl"] > 1e-6 and abs(a["kl"] - b["kl"]) < 1e-12 and abs(a["kl_mc"] - b["kl_mc"]) < 1e-12
