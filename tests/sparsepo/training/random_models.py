"""Tiny random decoders of each supported family (2 layers, hidden 32, vocabulary 97), in float64 and eval mode:
the models of the tests that compare the training forward with a naive computation."""

import torch
import transformers as T


def tiny(arch: str, seed: int, attn: str = "sdpa") -> torch.nn.Module:
    """A ``gpt2``, ``llama`` (grouped-query attention) or ``gpt_neox`` model seeded with ``seed``."""
    torch.manual_seed(seed)
    if arch == "gpt2":
        cfg = T.GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=97, n_positions=64, bos_token_id=0, eos_token_id=0)
    elif arch == "llama":
        cfg = T.LlamaConfig(num_hidden_layers=2, hidden_size=32, intermediate_size=64, num_attention_heads=4,
                            num_key_value_heads=2, vocab_size=97)
    else:
        cfg = T.GPTNeoXConfig(num_hidden_layers=2, hidden_size=32, intermediate_size=64, num_attention_heads=4, vocab_size=97)
    return T.AutoModelForCausalLM.from_config(cfg, attn_implementation=attn).double().eval()
