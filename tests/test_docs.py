"""The README and docs/*.md: every relative link resolves, every shown command parses.

Commands are checked in-process through ``sparsepo.cli.command_parser`` (each parser built once), so the
check stays in the fast tier: ``--help`` of each command must exit 0, and a command line shown without
placeholders (``<...>``, ``...``) must parse as written. The script shims (``python tune/frontier.py ...``,
``python evals/run.py ...``, ``python bench/<name>.py ...``, also after ``ray job submit ... --``) are checked as
the command they stand for; a benchmark's line is also read and validated by its own settings class.
docs/results.md heads every measurement with its machine and date.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```bash\n(.*?)^```", re.S | re.M)


def _slug(heading: str) -> str:
    """GitHub's anchor of a markdown heading: lower case, punctuation dropped, spaces to dashes."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    return {_slug(m) for m in re.findall(r"^#+ (.*)$", page.read_text(), re.M)}


def _links() -> list[tuple[Path, str]]:
    return [
        (p, target)
        for p in PAGES
        for target in LINK.findall(p.read_text())
        if not re.match(r"[a-z]+:", target)
    ]


def _commands() -> list[tuple[Path, str]]:
    found = []
    for page in PAGES:
        for block in FENCE.findall(page.read_text()):
            for line in block.replace("\\\n", " ").splitlines():
                line = line.split("  #")[0].strip()
                if line.startswith("ray job submit") and " -- " in line:
                    line = line.split(" -- ", 1)[1]
                if line.startswith("sparsepo ") or re.match(r"python (tune|evals|bench)/", line):
                    found.append((page, line))
    return found


@pytest.mark.parametrize(("page", "target"), _links(), ids=lambda v: str(v).replace(str(ROOT), ""))
def test_relative_link_resolves(page: Path, target: str) -> None:
    path, _, anchor = target.partition("#")
    dest = (page.parent / path).resolve() if path else page
    assert dest.exists(), f"{page.name}: link {target!r} points to a missing file"
    if anchor and dest.suffix == ".md":
        assert anchor in _anchors(dest), f"{page.name}: link {target!r} names no heading of {dest.name}"


def test_docs_show_commands() -> None:
    """The parser below must have something to check: README's tour shows sparsepo commands."""
    assert sum(p.name == "README.md" for p, _ in _commands()) >= 4


def test_every_shown_command_parses() -> None:
    from sparsepo.cli import command_parser, commands

    parsers: dict[str, object] = {}
    problems = []
    for page, line in _commands():
        words = shlex.split(line.replace("\\|", "|"))
        if words[0] == "python":  # a shim in tune/, evals/ or bench/: the script must exist
            if not (ROOT / words[1]).is_file():
                problems.append(f"{page.name}: {line!r}: no script {words[1]}")
                continue
            words = ["sparsepo", *_shim_command(words[1]), *words[2:]]
        name = words[1]
        if name not in commands():
            problems.append(f"{page.name}: {line!r}: no command {name!r}")
            continue
        if name not in parsers:
            parsers[name] = parser = command_parser(name)
            with contextlib.redirect_stdout(io.StringIO()), pytest.raises(SystemExit) as done:
                parser.parse_args(["--help"])
            assert done.value.code == 0, f"sparsepo {name} --help exited {done.value.code}"
        if "<" in line or "..." in line or "|" in line or "[" in line:
            continue  # a template, not a runnable line
        try:
            with contextlib.redirect_stderr(io.StringIO()):
                parsers[name].parse_args(words[2:])
        except SystemExit as exc:
            if exc.code != 0:
                problems.append(f"{page.name}: {line!r} does not parse")
        if name == "bench":
            problems += _bench_settings(page, line, words[2], words[3:])
    assert not problems, "\n".join(problems)


def _bench_settings(page: Path, line: str, benchmark: str, argv: list[str]) -> list[str]:
    """A shown benchmark line's own flags, read and validated as the benchmark reads them (types, choices,
    ranges, lists as separate values); its model is not resolved, nothing runs."""
    import importlib

    from sparsepo.bench.common import config_from_args
    from sparsepo.config.typed import ConfigError

    module = importlib.import_module(f"sparsepo.bench.{benchmark}")
    try:
        with contextlib.redirect_stderr(io.StringIO()) as err:
            config_from_args(module.CONFIG, module.build_parser().parse_args(argv))
    except SystemExit:
        return [f"{page.name}: {line!r}: {err.getvalue().strip().splitlines()[-1]}"]
    except ConfigError as exc:
        return [f"{page.name}: {line!r}: {exc}"]
    return []


def _shim_command(script: str) -> list[str]:
    """The ``sparsepo`` command a script shim stands for: tune/<name>.py is <name>, evals/run.py is eval,
    bench/<name>.py is ``bench <name>`` (whose own flags :func:`_bench_settings` checks)."""
    folder, stem = Path(script).parent.name, Path(script).stem
    return {"tune": [stem], "evals": ["eval"], "bench": ["bench", stem]}[folder]


def test_results_sections_say_machine_and_date() -> None:
    """Every measured section of docs/results.md (one that shows its command) names the machine and the date."""
    text = (ROOT / "docs" / "results.md").read_text()
    sections = re.split(r"^#+ ", text, flags=re.M)[1:]
    missing = [
        s.splitlines()[0]
        for s in sections
        if FENCE.search(s) and not (re.search(r"[Mm]achine", s) and re.search(r"Date: ", s))
    ]
    assert not missing, f"docs/results.md sections without machine or date: {missing}"


def test_make_demo_prepares_only_the_main_jobs_assets() -> None:
    """`make demo` prepares exactly the assets the sentiment frontier's defaults read (no NLI stand-in)."""
    from sparsepo.experiments.sentiment.frontier import FrontierConfig

    makefile = (ROOT / "Makefile").read_text()
    prereqs = re.search(r"^demo:(.*)$", makefile, re.M).group(1).split()
    recipes = [re.search(rf"^{p}:.*\n\t(.*)$", makefile, re.M).group(1) for p in prereqs if p != "setup"]
    prepared = {w for r in recipes if "assets prepare" in r for w in r.split("--only")[1].split()}
    cfg = FrontierConfig()
    assert prepared == {cfg.model, cfg.reviews}
