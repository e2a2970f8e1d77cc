"""``bench mask_init`` on a tiny model: it prints one row per start and seed, and the centred start is the option."""

from sparsepo.bench.mask_init import main


def test_mask_init_prints_every_seed_and_the_centred_start_is_near_its_option(capsys):
    assert main(["--model", "tiny-llama", "--seeds", "0", "1", "2", "--texts", "16"]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if line.startswith(("paper ", "centred "))]
    assert [(r[0], r[1]) for r in rows] == [(i, s) for i in ("paper", "centred") for s in ("0", "1", "2")]
    centred = [float(r[2]) for r in rows if r[0] == "centred"]
    assert all(abs(s - 50) < 12 for s in centred), centred  # held-out tokens: near mask.init_sparsity = 50%
    assert "after LayerNorm" in out
