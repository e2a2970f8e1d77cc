"""sparsepo bench generate: one subprocess per backend and OpenMP wait policy, busy neighbours cleaned up."""

from __future__ import annotations

import psutil
import pytest

from sparsepo.bench.common import busy_neighbours
from sparsepo.bench.generate import main
from sparsepo.config.typed import ConfigError


def test_each_omp_setting_gets_its_own_row_and_unknown_ones_are_refused(capsys):
    argv = ["--model", "tiny-llama", "--backends", "hf", "--n-prompts", "2", "--max-new-tokens", "4",
            "--repeats", "1", "--omp", "passive", "libgomp"]
    assert main(argv) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    table = {r[0]: r for r in rows if r and r[0].startswith("hf/") and not r[0].endswith(":")}  # not progress lines
    assert set(table) == {"hf/passive", "hf/libgomp"}
    assert table["hf/passive"][-1] == "1.00"  # the first hf row is the ratio's base
    assert int(table["hf/libgomp"][3]) == int(table["hf/passive"][3])  # same seed, same number of tokens
    with pytest.raises(ConfigError, match=r"omp\[1\]: 'spinny' is not one of 'sparsepo', 'libgomp'"):
        main([*argv[:-1], "spinny"])


def test_busy_neighbours_run_inside_the_block_and_are_gone_after():
    with busy_neighbours(2):
        children = psutil.Process().children()
        assert len(children) == 2 and all(c.is_running() for c in children)
    assert not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children)
