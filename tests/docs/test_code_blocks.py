"""The docs' examples keep working: every ```python block of README.md and docs/*.md runs,
every relative link points at a file that exists, and every `distillmeter <command>` a
shell block names is a real command with real options.

How a python block runs: alone, in a fresh namespace, in a fresh temporary directory that
holds a copy of the recorded H100 run at ``tests/data/h100-run-a`` (so a block can name it
as the docs do from the repo root). The meter's per-host idle cache is one file for the
whole session, as on a user's machine, so only the first metered block waits for its idle
baseline. A block that cannot run here (it needs a GPU, a cluster, or a model download)
is marked by an HTML comment on the line just before its fence, with the reason:

    <!-- no-run: needs a GPU and vLLM -->

Such exceptions are kept rare (``MAX_NO_RUN``); every other block must run in seconds."""

from __future__ import annotations

import os
import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FIXTURE = ROOT / "tests" / "data" / "h100-run-a"
NO_RUN = re.compile(r"^<!--\s*no-run:\s*(?P<reason>\S.*?)\s*-->$")
FENCE = re.compile(r"^```(?P<lang>[\w+-]*)\s*$")
MAX_NO_RUN = 4


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # of the opening fence, 1-based
    lang: str
    code: str
    no_run: str | None  # the reason, when marked

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def fenced_blocks(page: Path) -> list[Block]:
    """The fenced code blocks of a markdown page (top-level fences only: a fence indented
    inside a list item is a block too, once its indentation is removed)."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        stripped = lines[i].strip()
        m = FENCE.match(stripped)
        if m is None:
            i += 1
            continue
        indent = len(lines[i]) - len(lines[i].lstrip())
        start, body = i, []
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i][indent:] if lines[i][:indent].isspace() else lines[i])
            i += 1
        prev = next((lines[j].strip() for j in range(start - 1, -1, -1) if lines[j].strip()),
                    "")
        marked = NO_RUN.match(prev)
        blocks.append(Block(page, start + 1, m.group("lang"), "\n".join(body) + "\n",
                            marked.group("reason") if marked else None))
        i += 1
    return blocks


BLOCKS = [b for page in PAGES for b in fenced_blocks(page)]
PYTHON = [b for b in BLOCKS if b.lang == "python"]
SHELL = [b for b in BLOCKS if b.lang in ("bash", "console", "sh", "shell")]


def test_the_pages_have_examples_to_run():
    """The discovery itself works: the README and the pages hold python blocks."""
    assert any(b.page.name == "README.md" for b in PYTHON)
    assert len({b.page for b in PYTHON}) >= 5


def test_exceptions_are_rare_and_give_their_reason():
    skipped = [b for b in PYTHON if b.no_run is not None]
    assert len(skipped) <= MAX_NO_RUN, [b.name for b in skipped]
    for b in skipped:
        assert len(b.no_run) >= 10, f"{b.name}: say why it cannot run here"
    marked_elsewhere = [b.name for b in BLOCKS if b.no_run is not None and b.lang != "python"]
    assert marked_elsewhere == [], "no-run marks only python blocks"


@pytest.fixture(scope="session")
def idle_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("idle") / "idle.json"


@pytest.mark.parametrize("block", [b for b in PYTHON if b.no_run is None],
                         ids=lambda b: b.name)
def test_python_block_runs(block: Block, tmp_path, monkeypatch, idle_cache, one_torch_thread):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DISTILLMETER_IDLE_CACHE", str(idle_cache))
    shutil.copytree(FIXTURE, tmp_path / "tests" / "data" / FIXTURE.name)
    code = compile(block.code, block.name, "exec")
    environ = dict(os.environ)
    try:
        exec(code, {"__name__": "__docs__"})  # noqa: S102 - the docs' own examples
    finally:  # what a block sets in os.environ is undone
        os.environ.clear()
        os.environ.update(environ)


LINK = re.compile(r"(?<!!)\[[^\]\n]*\]\(([^)\s]+)\)")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_point_at_files(page: Path):
    text = page.read_text(encoding="utf-8")
    # links inside code blocks are code, not links
    text = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    broken = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue
        path = target.split("#", 1)[0]
        if not (page.parent / path).exists():
            broken.append(target)
    assert broken == [], f"{page.name}: links to missing files"


def _cli_commands() -> dict[str, set[str]]:
    """Every `distillmeter` command and the options it takes, from the CLI itself."""
    import click

    from distillmeter.cli import cli

    ctx = click.Context(cli)
    out = {}
    for name in cli.list_commands(ctx):
        cmd = cli.get_command(ctx, name)
        assert cmd is not None
        opts = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)}
        out[name] = opts | {"--help", "-h"}
    return out


def _invocations(block: Block) -> list[list[str]]:
    """The `distillmeter ...` command lines of a shell block (a `$ ` prompt and a trailing
    comment dropped; `.venv/bin/distillmeter` counts)."""
    found = []
    for raw in block.code.splitlines():
        line = raw.strip()
        if line.startswith("$ "):
            line = line[2:]
        elif block.lang == "console":
            continue  # output, not a command
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        try:
            words = shlex.split(line)
        except ValueError:
            words = line.split()
        for k, w in enumerate(words):
            if w == "distillmeter" or w.endswith("/distillmeter"):
                found.append(words[k + 1:])
                break
    return found


def test_shell_blocks_name_real_commands_and_options():
    commands = _cli_commands()
    calls = [(b, words) for b in SHELL for words in _invocations(b)]
    assert len(calls) >= 5
    wrong = []
    for block, words in calls:
        if not words or words[0] not in commands:
            wrong.append(f"{block.name}: distillmeter {' '.join(words[:1])}")
            continue
        name, rest = words[0], words[1:]
        if "--" in rest:  # measure's command follows
            rest = rest[: rest.index("--")]
        for w in rest:
            if w.startswith("-") and w.split("=", 1)[0] not in commands[name]:
                wrong.append(f"{block.name}: distillmeter {name} {w}")
    assert wrong == []


def test_the_cli_check_can_fail():
    """The check above would see a wrong command or option."""
    commands = _cli_commands()
    fake = Block(ROOT / "README.md", 1, "bash",
                 "distillmeter acount RUN\n.venv/bin/distillmeter run --seed 3\n", None)
    calls = _invocations(fake)
    assert calls == [["acount", "RUN"], ["run", "--seed", "3"]]
    assert "acount" not in commands and "--seed" not in commands["run"]


CODE_SPAN = re.compile(r"`([^`]+)`")  # spans may wrap a line
REPO_PATH = re.compile(r"(?:^|(?<=[\s(=]))((?:src|tests|benchmarks|scripts|docs)/[\w./-]*\w)")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_repo_paths_named_in_backticks_exist(page: Path):
    """`src/...`, `tests/...`, `benchmarks/...`, `scripts/...`, `docs/...` as the pages
    name them, from the repo root."""
    text = re.sub(r"^\s*```.*?^\s*```", "", page.read_text(encoding="utf-8"),
                  flags=re.M | re.S)
    named = {p for span in CODE_SPAN.findall(text) for p in REPO_PATH.findall(span)}
    assert named or page.name not in ("README.md", "DESIGN.md")
    missing = sorted(p for p in named if not (ROOT / p).exists())
    assert missing == []
