"""scripts/bench_report.py end to end on hand-made bench outputs in a temporary folder: the report and its plots are
written where the flags say, the run is priced with the ladder and costs it saved, the scale plot is copied beside
the report, a bad flag is refused, ``--only scale`` re-renders that section of a report already written, and
``--keep scale`` renders the rest again around it.
The figures themselves are tests/unit/test_sim_benchreport.py's."""

from __future__ import annotations

import importlib
import json
import os
import sys
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from ltrr.sim import benchreport as br
from ltrr.sim.benchreport import edit
from tests.unit.test_sim_benchreport import HEAD, LATENCY, LIVE, OLD_SCALE, RANKER, regret_json, run_of

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def script() -> Any:
    # The script (and scripts/bench_regret.py, which it imports) set environment defaults and change directory.
    cwd = os.getcwd()
    with mock.patch.dict(os.environ), mock.patch.object(sys, "path", [str(ROOT / "scripts"), *sys.path]):
        mod = importlib.import_module("bench_report")
    os.chdir(cwd)
    return mod


def outputs(tmp: Path) -> dict[str, Path]:
    """A regret run that saved its own ladder and costs (the fixture's, not the app config's), ranker.json,
    latency.json and a scale run with its plot."""
    data = regret_json(LIVE)
    data["meta"]["inloop_policy"] = {"ladder": [0, 10, 25], "costs": {"per_call": 0.2, "per_candidate": 0.02,
                                                                      "per_ms": 0.0}}  # fmt: skip
    run = tmp / "bench-out" / "regret-s0"
    run.mkdir(parents=True)
    (run / "regret.json").write_text(json.dumps(data))
    (tmp / "bench-out" / "ranker.json").write_text(json.dumps(RANKER))
    (tmp / "bench-out" / "latency.json").write_text(json.dumps(LATENCY))
    scale = tmp / "bench-out" / "scale"
    scale.mkdir()
    report = {"command": "scripts/bench_scale.py --sizes 100", "date": "2026-01-01 08:00 UTC", "commit": "abc1234",
              "machine": "2 cores", "ingest": [], "search": [], "plot": "scale.png"}  # fmt: skip
    (scale / "scale.json").write_text(json.dumps(report))
    (scale / "scale.png").write_bytes(b"not really a png")
    return {"run": run, "ranker": tmp / "bench-out" / "ranker.json", "latency": tmp / "bench-out" / "latency.json",
            "scale": scale / "scale.json"}  # fmt: skip


def run_main(script: Any, flags: list[str]) -> int:
    """``script.main(flags)``, back in this directory afterwards (the script changes to the repository root)."""
    cwd = os.getcwd()
    try:
        return int(script.main(flags))
    finally:
        os.chdir(cwd)


def test_the_report_and_its_plots_from_the_bench_outputs(script: Any, tmp_path: Path) -> None:
    got = outputs(tmp_path)
    out, plots = tmp_path / "docs" / "benchmarks.md", tmp_path / "docs" / "img"
    code = run_main(script, ["--regret", str(got["run"]), "--regret", str(tmp_path / "nothing-here"),
                             "--ranker", str(got["ranker"]), "--latency", str(got["latency"]),
                             "--scale", str(got["scale"]), "--out", str(out), "--plots-dir", str(plots),
                             "--window", "2"])  # fmt: skip
    assert code == 0
    md = out.read_text()
    # the run's own ladder (0, 10, 25) and costs: the same rows as the pure test's
    assert "| **ltrr live** | 2.4 | 1.0 | 0.0 | 0.500 | 12.5 | 1.25 |" in md
    assert "| best static plan in hindsight (a 25) | 1.2 | 0.6 | 0.3 | 1.000 | 25.0 | 1.00 |" in md
    for name in ("regret", "recall", "effort", "lists"):
        png = plots / f"benchmarks-regret-s0-{name}.png"
        assert png.read_bytes().startswith(b"\x89PNG"), name
        assert f"(img/benchmarks-regret-s0-{name}.png)" in md
    assert (plots / "benchmarks-scale.png").read_bytes() == b"not really a png"
    assert "![ingest time and search p50 against catalog size](img/benchmarks-scale.png)" in md
    assert "### Ingest" in md and "`make bench-scale` was not run" not in md
    assert f"- no regret run at `{tmp_path / 'nothing-here'}` (no `regret.json`)" in md
    commit = next(ln for ln in md.splitlines() if ln.startswith("- **Commit**: "))
    assert len(commit.removeprefix("- **Commit**: ").removesuffix("+dirty")) >= 7
    assert "GiB RAM" in next(ln for ln in md.splitlines() if ln.startswith("- **Machine**: "))


def test_the_commit_is_read_before_the_report_writes_anything(script: Any, tmp_path: Path) -> None:
    # Plots written into a tracked docs/ folder before `git status` ran made every report "+dirty".
    got = outputs(tmp_path)
    out, plots = tmp_path / "docs" / "benchmarks.md", tmp_path / "docs" / "img"
    seen: list[list[str]] = []

    def commit() -> str:
        seen.append(sorted(p.name for p in (tmp_path / "docs").rglob("*")) if (tmp_path / "docs").exists() else [])
        return "abc1234"

    with mock.patch.object(script, "commit", commit):
        code = run_main(script, ["--regret", str(got["run"]), "--ranker", str(got["ranker"]),
                                 "--latency", str(got["latency"]), "--scale", str(got["scale"]), "--out", str(out),
                                 "--plots-dir", str(plots)])  # fmt: skip
    assert code == 0
    assert seen == [[]]
    assert "- **Commit**: abc1234\n" in out.read_text()


def test_a_window_below_one_is_refused(script: Any, tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match=r"^--window must be >= 1, got 0$"):
        run_main(script, ["--window", "0", "--out", str(tmp_path / "b.md")])
    assert not (tmp_path / "b.md").exists()


def test_a_drift_run_gets_its_recovery_plot_marked_at_the_shift(script: Any, tmp_path: Path) -> None:
    got = outputs(tmp_path)
    data = json.loads((got["run"] / "regret.json").read_text())
    data["meta"]["drift_plan"] = {"at": 2, "new_entities": []}
    (got["run"] / "regret.json").write_text(json.dumps(data))
    out = tmp_path / "docs" / "benchmarks.md"
    drawn: list[tuple[str, Any]] = []
    real = script.plot_rolling

    def spy(series: Any, path: Path, ylabel: str, title: str, start: int = 1, mark: int | None = None) -> None:
        drawn.append((title, mark))
        real(series, path, ylabel, title, start, mark)

    with mock.patch.object(script, "plot_rolling", spy):
        assert run_main(script, ["--regret", str(got["run"]), "--out", str(out), "--window", "1"]) == 0
    assert drawn == [("Candidate recall over run regret-s0, through its drift", 2)]
    md = out.read_text()
    assert "run regret-s0 (the drift's recovery: the shift at query 3)](benchmarks-regret-s0-recall.png)" in md
    assert (tmp_path / "docs" / "benchmarks-regret-s0-recall.png").read_bytes().startswith(b"\x89PNG")


def small_report() -> str:
    """A small report as a whole render writes it, with an older scale run (and no plots)."""
    paths = {"ranker": "bench-out/ranker.json", "latency": "bench-out/latency.json", "scale": "bench-out/s.json"}
    return br.render(br.Inputs(HEAD, runs=[run_of(regret_json(LIVE))], ranker=RANKER, latency=LATENCY,
                               scale=OLD_SCALE, paths=paths))  # fmt: skip


def only_scale(script: Any, tmp: Path) -> tuple[int, Path, Path]:
    """:func:`small_report` at ``tmp/docs/benchmarks.md``, the 2026-12-02 scale run with its plot at
    ``tmp/new/scale.json``, then ``--only scale`` on them."""
    out, new = tmp / "docs" / "benchmarks.md", tmp / "new"
    out.parent.mkdir()
    out.write_text(small_report())
    new.mkdir()
    (new / "scale.json").write_text((ROOT / "tests" / "data" / "scale-2026-12-02.json").read_text())
    (new / "scale.png").write_bytes(b"the new plot")
    return run_main(script, ["--only", "scale", "--scale", str(new / "scale.json"), "--out", str(out)]), out, new


def test_only_scale_replaces_that_section_its_input_row_and_says_so_in_the_head(script: Any, tmp_path: Path) -> None:
    code, out, new = only_scale(script, tmp_path)
    assert code == 0
    md, old = out.read_text(), small_report()
    # questions 1 to 4 and what the run does not show: byte for byte
    assert md.split("## 1. ", 1)[1].split("## Scale\n")[0] == old.split("## 1. ", 1)[1].split("## Scale\n")[0]
    assert md[md.index("\n## What this run") :] == old[old.index("\n## What this run") :]
    section = md.split("## Scale\n", 1)[1].split("\n## What", 1)[0]
    assert "| 58,000 | lexical | 12.5 | 187 | 14.9 | 58,000 | 2,759 | 482 | ok |" in section
    assert "![ingest time and search p50 against catalog size](benchmarks-scale.png)" in section
    assert "scripts/bench_scale.py --sizes 100" not in md
    assert (out.parent / "benchmarks-scale.png").read_bytes() == b"the new plot"
    head = md.split("## 1. ", 1)[0].splitlines()
    row = next(ln for ln in head if ln.startswith("| scale |"))
    assert row == (f"| scale | `{new / 'scale.json'}` | 2026-12-02 07:18 UTC | `scripts/bench_scale.py --sizes "
                   "58000,250000 --searches 200` | 2 cores, AMD EPYC, 23.5 GiB RAM |")  # fmt: skip
    assert head[head.index("- **Date**: 2026-01-02") - 3 :][:3] == [  # the whole report's run, as it was
        "- **Command**: `scripts/bench_report.py --regret r`", "- **Commit**: abc1234+dirty",
        "- **Machine**: 2 cores, Test CPU, 8.0 GiB RAM"]  # fmt: skip
    mark = head[head.index("- **Date**: 2026-01-02") + 1]
    assert mark.startswith("- **Scale section regenerated**: 20") and "commit " in mark
    assert mark.endswith(f"by `scripts/bench_report.py --only scale --scale {new / 'scale.json'} --out {out}`; the "
                         "rest of the report is as of the commit and date above")  # fmt: skip
    # nothing else in the head moved
    assert [ln for ln in head if ln not in (mark, row)] == [ln for ln in old.split("## 1. ", 1)[0].splitlines()
                                                            if not ln.startswith("| scale |")]  # fmt: skip


@pytest.mark.parametrize(
    ("break_it", "message"),
    [
        (lambda out, new: out.unlink(), r"^--only scale: there is no report at .*benchmarks\.md to update; run "
                                        r"without --only to write it$"),
        (lambda out, new: (new / "scale.json").unlink(), r"^--only scale: there is no scale input at "
                                                         r".*scale\.json \(`make bench-scale` writes it\)$"),
        (lambda out, new: out.write_text(out.read_text().replace("## Scale\n", "")),
         r"^--only scale: .*benchmarks\.md: the report holds no `## Scale` heading line, needs exactly one$"),
    ],  # fmt: skip
    ids=["no report", "no scale input", "no scale section"],
)
def test_only_scale_fails_without_its_report_input_or_section(
    script: Any, tmp_path: Path, break_it: Any, message: str
) -> None:
    code, out, new = only_scale(script, tmp_path)  # a report and a scale run that work, then one part broken
    assert code == 0
    (out.parent / "benchmarks-scale.png").unlink()
    break_it(out, new)
    text = out.read_text() if out.exists() else None
    with pytest.raises(SystemExit, match=message) as exc:
        run_main(script, ["--only", "scale", "--scale", str(new / "scale.json"), "--out", str(out)])
    assert isinstance(exc.value.code, str)  # the message, printed to stderr with exit status 1
    assert (out.read_text() if out.exists() else None) == text  # untouched
    assert not (out.parent / "benchmarks-scale.png").exists()  # and no plot copied


def keep_scale(script: Any, tmp: Path) -> tuple[Path, str, list[str]]:
    """A report whose Scale section came from the 2026-12-02 scale run (:func:`only_scale`), the flags of a new
    whole report from :func:`outputs` with its scale run gone, and that report's text before."""
    code, out, _ = only_scale(script, tmp)
    assert code == 0
    paths = outputs(tmp)
    paths["scale"].unlink()
    flags = ["--keep", "scale", "--regret", str(paths["run"]), "--ranker", str(paths["ranker"]),
             "--latency", str(paths["latency"]), "--scale", str(paths["scale"]), "--out", str(out)]  # fmt: skip
    return out, out.read_text(), flags


def test_keep_scale_renders_the_rest_again_and_carries_the_scale_section_over(script: Any, tmp_path: Path) -> None:
    out, before, flags = keep_scale(script, tmp_path)
    assert run_main(script, flags) == 0
    md = out.read_text()
    assert edit.section(md, "## Scale") == edit.section(before, "## Scale")  # the 58k/250k tables, as they were
    assert "| 58,000 | lexical | 12.5 | 187 | 14.9 | 58,000 | 2,759 | 482 | ok |" in md
    assert edit.head_row(md, "scale") == edit.head_row(before, "scale")
    regenerated = edit.head_value(before, "Scale section regenerated")
    assert regenerated is not None
    kept = edit.head_value(md, "Scale section kept")
    assert kept == (f"from the previous report, where it was regenerated "
                    f"{regenerated.removesuffix('; the rest of the report is as of the commit and date above')}; "
                    "its input was not read by this run")  # fmt: skip
    # the rest is this run's: its command, the new regret run, and no "not run" line for the kept section
    assert edit.head_value(md, "Command") == "`scripts/bench_report.py " + " ".join(flags) + "`"
    assert "regret run `regret-s0`" in md and "regret-s0" not in before and "run-a" in before
    assert "- scale: `make bench-scale` was not run" not in md
    assert edit.head_value(md, "Scale section regenerated") is None


@pytest.mark.parametrize(
    ("break_it", "message"),
    [
        (lambda out, flags: out.unlink(), r"^--keep scale: there is no report at .*benchmarks\.md to keep the section "
                                          r"from$"),
        (lambda out, flags: Path(flags[flags.index("--scale") + 1]).write_text("{}"),
         r"^--keep scale: there is a scale input at .*scale\.json; render it instead of keeping the old section$"),
        (lambda out, flags: out.write_text(out.read_text().replace("## Scale\n", "")),
         r"^--keep scale: .*benchmarks\.md: the report holds no `## Scale` heading line, needs exactly one$"),
        (lambda out, flags: flags.extend(["--only", "scale"]), r"^--only and --keep exclude each other$"),
    ],  # fmt: skip
    ids=["no report", "a scale input", "no scale section", "with --only"],
)
def test_keep_scale_fails_and_leaves_the_report_as_it_was(
    script: Any, tmp_path: Path, break_it: Any, message: str
) -> None:
    out, _, flags = keep_scale(script, tmp_path)
    break_it(out, flags)
    text = out.read_text() if out.exists() else None
    with pytest.raises(SystemExit, match=message) as exc:
        run_main(script, flags)
    assert isinstance(exc.value.code, str)
    assert (out.read_text() if out.exists() else None) == text
