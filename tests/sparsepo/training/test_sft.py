"""The SFT stage: row kinds, the response-only NLL against a naive per-example computation, and Ray runs."""

import pytest
import torch
import torch.nn.functional as F

from sparsepo.data.preference import DataConfig, PreferenceDataError
from sparsepo.training.models import load_causal_lm, load_tokenizer
from sparsepo.training.sft import SFTCollator, SFTModel, load_sft_data, tokenize_sft_row

CFG = DataConfig(max_length=64, max_prompt_length=40)
ROWS = [
    {"prompt": "The film was", "completion": " a quiet triumph."},
    {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."},
                  {"role": "user", "content": "Rate the film."}, {"role": "assistant", "content": "Nine of ten."}]},
    {"prompt": [{"role": "user", "content": "Review it."}], "chosen": "Superb acting.", "rejected": "Dull."},
]


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer("tiny-llama")


def test_each_row_kind_tokenises_prompt_and_response(tok):
    plain, conv, pref = (tokenize_sft_row(r, tok, CFG, "rows", i) for i, r in enumerate(ROWS))
    assert plain["prompt_ids"] == tok("The film was")["input_ids"]
    assert plain["response_ids"] == tok(" a quiet triumph.", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    # messages: the last assistant turn is the response, earlier turns (assistant ones too) are the prompt
    head = tok.apply_chat_template(ROWS[1]["messages"][:-1], tokenize=False, add_generation_prompt=True)
    assert tok.decode(conv["prompt_ids"]) == head
    assert "Hello." in tok.decode(conv["prompt_ids"]) and "Nine of ten." in tok.decode(conv["response_ids"])
    assert "Superb acting." in tok.decode(pref["response_ids"]) and "Dull" not in tok.decode(pref["response_ids"])


@pytest.mark.parametrize(
    "row,field,problem",
    [
        ({"messages": [{"role": "user", "content": "Hi"}]}, "messages", "must end with an assistant turn"),
        ({"messages": [{"role": "assistant", "content": "Hi"}]}, "messages", "at least one turn before"),
        ({"messages": "Hi"}, "messages", "list of {role, content}"),
        ({"completion": "x"}, "prompt", "missing"),
        ({"prompt": "x", "completion": "  "}, "completion", "empty response"),
        ({"prompt": "x", "completion": 3}, "completion", "must be a string or a list"),
        ({"text": "x"}, "<row>", "needs 'messages'"),
        ({"prompt": "word " * 60, "completion": "x"}, "prompt", "longer than max_prompt_length"),
    ],
)
def test_bad_rows_name_row_and_field(tok, row, field, problem):
    with pytest.raises(PreferenceDataError, match="row 3") as e:
        tokenize_sft_row(row, tok, CFG, "sft.jsonl", 3)
    assert e.value.field == field and problem in str(e.value)


def test_skip_invalid_counts_dropped_rows(tok):
    ds, report = load_sft_data(DataConfig(max_length=64, max_prompt_length=40, skip_invalid=True), tok,
                               rows=[*ROWS, {"messages": []}])
    assert len(ds) == 3 and report.kept == 3 and "3 of 4 SFT examples" in str(report)


def naive_nll(model, example):
    """Token-mean NLL of the response of one unpadded example, from the full logits."""
    p, r = example["prompt_ids"], example["response_ids"]
    ids = torch.tensor([p + r])
    logp = F.log_softmax(model(input_ids=ids).logits[0].double(), -1)
    return [-logp[t - 1, ids[0, t]] for t in range(len(p), len(p) + len(r))]


def test_sft_loss_is_response_token_nll(tok):
    model = load_causal_lm("tiny-llama", dtype="float32").eval()
    ds, _ = load_sft_data(CFG, tok, rows=ROWS)
    examples = [ds[i] for i in range(len(ds))]
    batch = SFTCollator(tok.pad_token_id)(examples)
    assert batch["input_ids"].shape[0] == 3  # one row per example, padded
    out = SFTModel(model, chunk_size=7)(batch)  # chunked LM head: chunks cross example boundaries
    with torch.no_grad():
        terms = [t for e in examples for t in naive_nll(model, e)]
        want = torch.stack(terms).mean()
        with_prompt = -torch.stack([
            F.log_softmax(model(input_ids=torch.tensor([e["prompt_ids"] + e["response_ids"]])).logits[0], -1)[:-1]
            .gather(-1, torch.tensor(e["prompt_ids"][1:] + e["response_ids"])[:, None]).sum()
            for e in examples
        ]).sum() / sum(len(e["prompt_ids"]) - 1 + len(e["response_ids"]) for e in examples)
    assert out.loss.item() == pytest.approx(want.item(), rel=1e-5)
    assert abs(with_prompt.item() - want.item()) > 1e-3  # the prompt tokens would change it: they are excluded
    assert out.result.metrics["sft/response_tokens"].item() == pytest.approx(
        sum(len(e["response_ids"]) for e in examples) / 3)
    out.loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


@pytest.mark.slow
def test_sft_run_through_ray_then_serves_as_the_dpo_reference(tmp_path):
    import math

    import ray

    from sparsepo.config.schema import load_config
    from sparsepo.training.train import make_trainer

    common = ["model.name=tiny-llama", "data.path=offline:review-pairs", "data.limit=16", "data.max_length=64",
              "data.max_prompt_length=40", "optim.batch_size=4", "optim.warmup_ratio=0", "run.chunk_size=64",
              f"run.storage_path={tmp_path}"]
    ray.init(address="local", num_cpus=2, include_dashboard=False, ignore_reinit_error=True)
    try:
        sft = make_trainer(load_config(None, [*common, "method=sft", "optim.lr=3e-3", "optim.max_steps=8",
                                              "run.name=sft"])).fit()
        policy = f"{sft.checkpoint.path}/policy"

        def dpo(model, name):
            # fp32: under bf16 autocast the policy's and the reference's passes (different kernels with and without
            # grad) differ by ~3e-5 in the loss on an AMX CPU, and "exactly log 2" below is the point
            over = ["method=dpo", "optim.lr=1e-4", "optim.max_steps=1", f"model.name={model}", f"run.name={name}",
                    "optim.bf16=false"]
            return make_trainer(load_config(None, [*common, *over])).fit().return_value[0]
        chained, base = dpo(policy, "dpo-from-sft"), dpo("tiny-llama", "dpo-from-base")
    finally:
        ray.shutdown()
    nll = [m["loss"] for m in sft.return_value]
    assert len(nll) == 8 and nll[-1] < nll[0] - 0.5  # SFT learned the chosen responses
    assert not any(k.startswith("rewards/") for k in sft.return_value[0])  # a sequence objective, not pairs
    # The DPO run starts from the SFT policy and uses it as its reference (model.ref defaults to model.name):
    # step 1 has policy == reference, so the loss is exactly log 2, and the SFT-trained chosen responses are
    # far more likely than under the base model.
    assert chained["loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert chained["logps/chosen"] > base["logps/chosen"] + 5.0
