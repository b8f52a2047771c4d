"""The documentation is true.

Every command shown in README.md and docs/*.md either runs here (searches as
``--dry-run``, trainings for real on tiny settings, ``python -c`` snippets) or,
where it cannot run here (cluster, W&B, benchmarks), its program, subcommand
and every flag it uses must exist in that program's ``--help``. Every search
space shown loads, every broken space shown fails to load, every repository
path and link named exists, the option and knob tables match the code, and no
page cites a file outside the repository.
"""
from __future__ import annotations

import contextlib
import io
import os
import re
import runpy
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DOC_FILES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SHELL_LANGS = {"bash", "sh", "shell", "console"}
BIN = Path(sys.executable).parent
# Commands shown in the docs that are not run or checked here, and why.
NOT_CHECKED = {
    "pip": "installs packages from the network",
    "aws": "the AWS command line is not installed here",
    "cd": "shell builtin",
    "source": "shell builtin",
    "grep": "standard tool",
    "tail": "standard tool",
    "sbatch": "SLURM is not installed here (tests/test_cluster_slurm.py runs the script with stand-ins)",
    "kubectl": "no Kubernetes here (tests/test_cluster_kuberay.py checks the manifests)",
    "docker": "no Docker here (tests/test_cluster_kuberay.py checks the Dockerfile)",
}
# Config files of `ray up`-style subcommands: the first *.yaml argument must be a repository file.
RAY_CONFIG_SUBCOMMANDS = {"up", "down", "attach", "exec", "submit", "dashboard", "rsync-down", "rsync-up",
                          "get-head-ip", "get-worker-ips", "monitor"}
# Outside the repository: the digest, the papers, the notes and the machine's shared folder.
# (`/mnt/shared` is the NFS mount that cluster-onprem.yaml requires, not a citation.)
FORBIDDEN = [r"/work/", r"METHODS\.md", r"(?<!/mnt/)\bshared/", r"\bnotes/", r"\bpapers/"]
TINY_TRAIN = ["--set", "pretrained=false", "--set", "backbone=test_resnet", "--set", "epochs=1",
              "--set", "batch_size=4", "--set", "img_size=48", "--set", "max_train_batches=2",
              "--set", "max_eval_batches=2", "--set", "device=cpu", "--no-progress"]


# ---------------------------------------------------------------- parsing
@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    lang: str
    label: str  # the rest of the info string, e.g. "space=my_gholm.yaml"
    text: str


@dataclass(frozen=True)
class Command:
    path: Path
    line: int
    argv: tuple[str, ...]

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"


def fenced_blocks(path: Path) -> list[Block]:
    blocks, lines, i = [], path.read_text().splitlines(), 0
    while i < len(lines):
        match = re.match(r"^```(\S*)\s*(.*)$", lines[i])
        if match and lines[i].startswith("```"):
            start, body = i + 1, []
            i += 1
            while i < len(lines) and not lines[i].startswith("```"):
                body.append(lines[i])
                i += 1
            blocks.append(Block(path, start, match.group(1), match.group(2).strip(), "\n".join(body) + "\n"))
        i += 1
    return blocks


def logical_lines(text: str, console: bool = False) -> list[tuple[int, str]]:
    """(offset, line) with backslash continuations joined; console blocks keep only `$ ` lines."""
    out: list[tuple[int, str]] = []
    pending, start = "", 0
    for n, raw in enumerate(text.splitlines()):
        line = raw
        if not pending:
            start = n
            if console:
                if not line.startswith("$ "):
                    continue
                line = line[2:]
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        out.append((start, pending + line))
        pending = ""
    if pending:
        out.append((start, pending))
    return out


def split_commands(line: str) -> list[list[str]]:
    """One shell line -> the simple commands in it (split on && || ; | &), comments and
    leading VAR=value assignments removed."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    commands, current = [], []
    for token in lexer:
        if token and set(token) <= set(";&|"):
            commands.append(current)
            current = []
        else:
            current.append(token)
    commands.append(current)
    cleaned = []
    for argv in commands:
        while argv and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", argv[0]):
            argv = argv[1:]
        if argv:
            cleaned.append(argv)
    return cleaned


def shell_commands(block: Block) -> list[Command]:
    out = []
    for offset, line in logical_lines(block.text, console=block.lang == "console"):
        for argv in split_commands(line):
            out.append(Command(block.path, block.line + offset, tuple(argv)))
    return out


def all_blocks() -> list[Block]:
    return [b for path in DOC_FILES for b in fenced_blocks(path)]


ALL_COMMANDS = [c for b in all_blocks() if b.lang in SHELL_LANGS for c in shell_commands(b)]
SPACE_BLOCKS = [b for b in all_blocks() if b.lang == "yaml" and b.label.split("=")[0] == "space"]
BAD_SPACE_BLOCKS = [b for b in all_blocks() if b.lang == "yaml" and b.label == "bad-space"]


def space_file_name(block: Block) -> str:
    return block.label.split("=", 1)[1] if "=" in block.label else "space.yaml"


# ---------------------------------------------------------------- running
def run_in_process(argv: list[str], cwd: Path, script: Path | None = None, module: str | None = None
                   ) -> tuple[int, str, str]:
    """Run a script or module as `python ...` would, in this process (imports stay warm)."""
    out, err = io.StringIO(), io.StringIO()
    old_argv, old_cwd = sys.argv, Path.cwd()
    sys.argv = [str(script or module), *argv]
    os.chdir(cwd)
    code: int | str | None = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                if script is not None:
                    runpy.run_path(str(script), run_name="__main__")
                else:
                    runpy.run_module(module, run_name="__main__", alter_sys=True)
            except SystemExit as exc:
                code = exc.code
    finally:
        sys.argv = old_argv
        os.chdir(old_cwd)
    rc = 0 if code is None else code if isinstance(code, int) else 1
    return rc, out.getvalue(), err.getvalue()


def option_value(argv: list[str], flag: str) -> str | None:
    for i, token in enumerate(argv):
        if token == flag and i + 1 < len(argv):
            return argv[i + 1]
        if token.startswith(flag + "="):
            return token.split("=", 1)[1]
    return None


def replace_option(argv: list[str], flag: str, value: str) -> list[str]:
    out = list(argv)
    for i, token in enumerate(out):
        if token == flag and i + 1 < len(out):
            out[i + 1] = value
        elif token.startswith(flag + "="):
            out[i] = f"{flag}={value}"
    return out


def fake_data_root(data: str, tmp: Path) -> str:
    """A tiny on-disk copy of the dataset layout the command names."""
    from tests import fakes

    writers = {"cub": fakes.write_fake_cub, "aircraft": fakes.write_fake_aircraft, "cars": fakes.write_fake_cars,
               "dogs": fakes.write_fake_dogs, "imagefolder": fakes.write_fake_imagefolder}
    if data not in writers:
        (tmp / "synthetic_cache").mkdir(exist_ok=True)
        return str(tmp / "synthetic_cache")
    return str(writers[data](tmp / f"fake_{data}"))


def write_doc_spaces(doc: Path, cwd: Path) -> None:
    """The space files a page shows (```yaml space=NAME), so its commands can use them."""
    for block in SPACE_BLOCKS:
        if block.path == doc:
            (cwd / space_file_name(block)).write_text(block.text)


def check_run_search(args: list[str], cmd: Command, tmp: Path) -> None:
    """Run the search CLI as a dry run on stand-in data and storage."""
    args = list(args)
    if "--data-root" in " ".join(args):
        args = replace_option(args, "--data-root", fake_data_root(option_value(args, "--data") or "synthetic", tmp))
    storage = option_value(args, "--storage")
    if storage and "://" in storage:
        args = replace_option(args, "--storage", str(tmp / "bucket"))  # no network here
    gpus = option_value(args, "--gpus-per-trial")
    if gpus and float(gpus) > 0 and "--address" not in args and not _cuda():
        args += ["--address", "auto"]  # no GPU here: plan it as a cluster run (a dry run connects to nothing)
    if "--dry-run" not in args:
        args.append("--dry-run")
    write_doc_spaces(cmd.path, tmp)
    rc, out, err = run_in_process(args, tmp, script=REPO / "run_search.py")
    assert "Traceback" not in err, f"{cmd.where}: {' '.join(cmd.argv)} crashed:\n{err}"
    if "--resume" in args:
        # nothing to resume here: it must get past the parser and fail only on the missing search
        parser_error = re.search(r"unrecognized arguments|invalid choice|expected one argument|invalid \w+ value", err)
        assert rc == 2 and "--resume" in err and not parser_error, f"{cmd.where}: {' '.join(cmd.argv)} -> rc {rc}\n{err}"
        return
    assert rc == 0, f"{cmd.where}: {' '.join(cmd.argv)} -> rc {rc}\n{out[-2000:]}\n{err[-2000:]}"
    assert "nothing started" in out or "usage:" in out


def check_train(args: list[str], cmd: Command, tmp: Path) -> None:
    """Run `python -m fgmodels.train` for real, made tiny with extra --set overrides."""
    from fgmodels.config import resolve_config, save_config

    args = list(args)
    if "--help" in args:
        rc, out, _ = run_in_process(args, tmp, module="fgmodels.train")
        assert rc == 0 and "usage:" in out
        return
    if option_value(args, "--data-root"):
        args = replace_option(args, "--data-root", fake_data_root(option_value(args, "--data") or "synthetic", tmp))
    config = option_value(args, "--config")
    if config and not (tmp / config).exists():  # a search's best_config.yaml, as the search writes it
        (tmp / config).parent.mkdir(parents=True, exist_ok=True)
        save_config(resolve_config({"method": "gholm", "data": "synthetic"}), tmp / config)
    # a documented flag that the tiny overrides also set (--epochs 40 / --set epochs=1) would be
    # refused as given twice: drop the documented one, the tiny value is what runs here
    tiny_keys = {TINY_TRAIN[i + 1].split("=")[0] for i, a in enumerate(TINY_TRAIN) if a == "--set"}
    for key in tiny_keys:
        flag = "--" + key.replace("_", "-")
        if flag in args:
            i = args.index(flag)
            del args[i:i + 2]
    rc, out, err = run_in_process(args + TINY_TRAIN, tmp, module="fgmodels.train")
    assert rc == 0, f"{cmd.where}: {' '.join(cmd.argv)} -> rc {rc}\n{out[-2000:]}\n{err[-2000:]}"
    summaries = list(tmp.glob("runs/*/summary.json")) + list(tmp.glob("*/summary.json"))
    assert summaries, f"{cmd.where}: no summary.json written"
    if "--test" in args:
        assert '"test"' in summaries[0].read_text(), f"{cmd.where}: --test gave no test result"


@lru_cache(maxsize=None)
def help_text(*argv: str) -> tuple[int, str]:
    proc = subprocess.run([*argv, "--help"], capture_output=True, text=True, timeout=300, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    return proc.returncode, proc.stdout + proc.stderr


def assert_flags_in_help(argv: list[str], help_argv: tuple[str, ...], cmd: Command) -> None:
    rc, text = help_text(*help_argv)
    assert rc == 0, f"{cmd.where}: `{' '.join(help_argv)} --help` fails:\n{text[-1500:]}"
    used = [t.split("=", 1)[0] for t in argv if re.match(r"^--?[A-Za-z]", t)]
    missing = [f for f in used if not re.search(rf"(?<![\w-]){re.escape(f)}(?![\w-])", text)]
    assert not missing, f"{cmd.where}: {' '.join(help_argv)} has no option(s) {missing}"


def check_ray(argv: list[str], cmd: Command, tmp: Path) -> None:
    args = argv[1:]
    sep = args.index("--") if "--" in args else len(args)
    own, rest = args[:sep], args[sep + 1:]
    words = [a for a in own if not a.startswith("-")]
    sub = tuple(words[:2]) if words and words[0] == "job" else tuple(words[:1])
    assert sub, f"{cmd.where}: `ray` without a subcommand"
    assert_flags_in_help(own, (str(BIN / "ray"), *sub), cmd)
    if sub[0] in RAY_CONFIG_SUBCOMMANDS:
        configs = [a for a in own if a.endswith((".yaml", ".yml"))]
        assert configs and (REPO / configs[0]).is_file(), f"{cmd.where}: cluster config {configs[:1]} not in the repo"
    if sub == ("submit",):  # ray submit CONFIG SCRIPT [-- ARGS]: the script's own arguments
        script = [a for a in own if a.endswith(".py")]
        assert script and (REPO / script[0]).is_file(), f"{cmd.where}: script {script[:1]} not in the repo"
        if script[0] == "run_search.py":
            check_run_search(rest, cmd, tmp)
    if sub == ("job", "submit"):
        # Ray's job CLI quotes every argument after `--` on its own: a whole command line
        # in one argument is taken as a program name (exit 127); it must go through bash -c.
        assert rest, f"{cmd.where}: ray job submit without an entrypoint after --"
        assert " " not in rest[0], f"{cmd.where}: entrypoint {rest[0]!r} is one word with spaces: use bash -c \"...\""
        if rest[:2] == ["bash", "-c"]:
            check_inner_command_line(rest[2], cmd, tmp)
        else:
            check_command(Command(cmd.path, cmd.line, tuple(rest)), tmp)
    if sub == ("exec",):
        inner = [a for a in own[1:] if " " in a or a in ("ray", "wandb")]
        for line in inner:
            check_inner_command_line(line, cmd, tmp)


def check_inner_command_line(line: str, cmd: Command, tmp: Path) -> None:
    """A command line run on a cluster node (ray exec "...", bash -c "...")."""
    for argv in split_commands(line):
        check_command(Command(cmd.path, cmd.line, tuple(argv)), tmp)


def check_python(argv: list[str], cmd: Command, tmp: Path) -> None:
    args = argv[1:]
    if args[:1] == ["run_search.py"]:
        check_run_search(args[1:], cmd, tmp)
    elif args[:2] == ["-m", "fgmodels.train"]:
        check_train(args[2:], cmd, tmp)
    elif args[:2] == ["-m", "search.wandb_sweep"]:  # needs a W&B login: its flags only
        assert_flags_in_help(args[2:], (sys.executable, "-m", "search.wandb_sweep"), cmd)
    elif args[:1] == ["-c"]:
        proc = subprocess.run([sys.executable, "-c", args[1]], capture_output=True, text=True, timeout=600,
                              cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
        assert proc.returncode == 0, f"{cmd.where}: python -c failed:\n{proc.stderr[-2000:]}"
    elif args and args[0].endswith(".py"):
        assert (REPO / args[0]).is_file(), f"{cmd.where}: {args[0]} is not in the repository"
        assert_flags_in_help(args[1:], (sys.executable, str(REPO / args[0])), cmd)
    else:
        pytest.fail(f"{cmd.where}: no check for `python {' '.join(args[:2])}`")


def check_command(cmd: Command, tmp: Path) -> None:
    argv = list(cmd.argv)
    program = argv[0]
    if program in ("python", "python3"):
        check_python(argv, cmd, tmp)
    elif program == "fgvc-search":  # documented as the same command line as python run_search.py
        check_run_search(argv[1:], cmd, tmp)
    elif program == "ray":
        check_ray(argv, cmd, tmp)
    elif program == "wandb":
        sub = tuple(a for a in argv[1:2] if not a.startswith("-"))
        assert_flags_in_help(argv[2:], (str(BIN / "wandb"), *sub), cmd)
    elif program == "bash":
        script = REPO / argv[1]
        assert script.is_file(), f"{cmd.where}: {argv[1]} does not exist"
        proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert proc.returncode == 0, f"{cmd.where}: {argv[1]} has a syntax error:\n{proc.stderr}"
    elif program not in NOT_CHECKED:
        pytest.fail(f"{cmd.where}: no check for the program `{program}`; add one to tests/test_docs.py "
                    f"(or to NOT_CHECKED with the reason)")


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


# ---------------------------------------------------------------- the tests
@pytest.mark.parametrize("cmd", ALL_COMMANDS, ids=lambda c: f"{c.where}:{c.argv[0]}")
def test_documented_command_works(cmd: Command, tmp_path: Path) -> None:
    check_command(cmd, tmp_path)


@pytest.mark.parametrize("block", [b for b in all_blocks() if b.lang in SHELL_LANGS],
                         ids=lambda b: f"{b.path.relative_to(REPO)}:{b.line}")
def test_shell_blocks_parse(block: Block) -> None:
    text = "\n".join(line for _, line in logical_lines(block.text, console=True)) if block.lang == "console" \
        else block.text
    proc = subprocess.run(["bash", "-n"], input=text, capture_output=True, text=True)
    assert proc.returncode == 0, f"{block.path.name}:{block.line}: not valid shell:\n{proc.stderr}"


@pytest.mark.parametrize("block", SPACE_BLOCKS, ids=lambda b: f"{b.path.relative_to(REPO)}:{b.line}")
def test_documented_space_loads(block: Block, tmp_path: Path) -> None:
    from search.spaces import load_space

    path = tmp_path / space_file_name(block)
    path.write_text(block.text)
    space = load_space(str(path))
    assert space.methods, f"{block.path.name}:{block.line}: the space has no method"
    assert yaml.safe_load(block.text).get("params") or yaml.safe_load(block.text).get("include")


@pytest.mark.parametrize("block", BAD_SPACE_BLOCKS, ids=lambda b: f"{b.path.relative_to(REPO)}:{b.line}")
def test_documented_bad_space_fails(block: Block, tmp_path: Path) -> None:
    from search.spaces import SpaceError, load_space

    path = tmp_path / "my.yaml"
    path.write_text(block.text)
    with pytest.raises(SpaceError) as err:
        load_space(str(path))
    assert "Fix:" in str(err.value)


def test_every_space_like_yaml_block_is_labelled() -> None:
    """A space shown without a label would escape the loading test."""
    for block in all_blocks():
        if block.lang in ("yaml", "yml"):
            data = yaml.safe_load(block.text)
            if isinstance(data, dict) and {"params", "include", "fixed"} & set(data):
                assert block.label.split("=")[0] in ("space", "bad-space"), \
                    f"{block.path.name}:{block.line}: label this block `yaml space=NAME` or `yaml bad-space`"


def test_python_blocks_compile() -> None:
    for block in all_blocks():
        if block.lang == "python":
            compile(block.text, f"{block.path.name}:{block.line}", "exec")


def _inline_code(path: Path) -> list[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.S | re.M)
    return re.findall(r"`([^`\n]+)`", text)


@pytest.mark.parametrize("doc", DOC_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_repository_paths_exist(doc: Path) -> None:
    missing = []
    for span in _inline_code(doc):
        for token in span.split():
            token = token.rstrip(".,;:)")
            if re.match(r"^(fgmodels|search|spaces|benchmarks|docs|scripts|tests)/", token) \
                    and not re.search(r"[<*]", token) and not (REPO / token).exists():
                missing.append(token)
    assert not missing, f"{doc.name} names files that do not exist: {missing}"


def _slug(heading: str) -> str:
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


@pytest.mark.parametrize("doc", DOC_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_links_resolve(doc: Path) -> None:
    for target in re.findall(r"\]\(([^)\s]+)\)", doc.read_text()):
        if re.match(r"^[a-z]+://", target):
            continue
        file_part, _, anchor = target.partition("#")
        path = (doc.parent / file_part).resolve() if file_part else doc
        assert path.exists(), f"{doc.name}: link to {target} points at nothing"
        if anchor:
            headings = re.findall(r"^#+\s+(.*)$", path.read_text(), flags=re.M)
            assert anchor in {_slug(h) for h in headings}, f"{doc.name}: no heading #{anchor} in {path.name}"


@pytest.mark.parametrize("doc", DOC_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_docs_cite_nothing_outside_the_repository(doc: Path) -> None:
    text = doc.read_text()
    found = [p for p in FORBIDDEN if re.search(p, text)]
    assert not found, f"{doc.name} cites something outside the repository: {found}"


def _tracked_text_files() -> list[Path]:
    proc = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip("not a git checkout")
    suffixes = {".py", ".md", ".yaml", ".yml", ".sh", ".toml", ".json", ".txt", ".cfg"}
    return [REPO / f for f in proc.stdout.split() if Path(f).suffix in suffixes and Path(f).name != "test_docs.py"]


def test_repository_cites_nothing_outside_itself() -> None:
    """Code, comments, configs and data files too, not only the docs."""
    offenders = []
    for path in _tracked_text_files():
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if any(re.search(p, line) for p in FORBIDDEN):
                offenders.append(f"{path.relative_to(REPO)}:{n}: {line.strip()[:100]}")
    assert not offenders, "cites files outside the repository:\n" + "\n".join(offenders)


# ---------------------------------------------------------------- tables against the code
def _table_after(text: str, header_start: str) -> list[list[str]]:
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(header_start):
            rows = []
            for row in lines[i + 2:]:
                if not row.startswith("|"):
                    break
                rows.append([c.strip() for c in row.strip().strip("|").split("|")])
            return rows
    return []


def _run_search_help_options() -> set[str]:
    rc, out, _ = run_in_process(["--help"], REPO, script=REPO / "run_search.py")
    assert rc == 0
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", out)) - {"--help"}


def test_readme_option_table_matches_the_cli() -> None:
    rows = _table_after((REPO / "README.md").read_text(), "| option |")
    assert rows, "README.md has no `| option |` table"
    documented = {o for row in rows for o in re.findall(r"--[a-z][a-z0-9-]*", row[0])}
    actual = _run_search_help_options()
    assert documented - actual == set(), f"README documents options the CLI lacks: {documented - actual}"
    assert actual - documented == set(), f"README's option table misses: {actual - documented}"


def test_readme_keeps_the_two_commands_short() -> None:
    text = (REPO / "README.md").read_text()
    first_shell = next(b for b in fenced_blocks(REPO / "README.md") if b.lang in SHELL_LANGS)
    assert [c.argv for c in shell_commands(first_shell)] == [("bash", "scripts/demo.sh"), ("bash", "scripts/test.sh")]
    assert "`.ci/run` calls command 2" in text
    assert len(text.splitlines()) <= 280, "README.md is the first path: move details into docs/"


def _section(text: str, title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\s*$(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    assert match, f"no section `## {title}`"
    return match.group(1)


def _documented_defaults(section: str, header: str) -> dict[str, object]:
    out = {}
    for row in _table_after(section, header):
        key, default = re.findall(r"`([^`]+)`", row[0]), re.findall(r"`([^`]*)`", row[1])
        if key and default:
            out[key[0]] = yaml.safe_load(default[0])
    return out


def _same_default(doc: object, code: object) -> bool:
    if isinstance(code, float) and isinstance(doc, (int, float)) and not isinstance(doc, bool):
        return abs(doc - code) <= 1e-3 * max(1.0, abs(code))
    if isinstance(code, tuple):
        code = list(code)
    return doc == code and type(doc) is type(code) or (doc is None and code is None)


def test_method_knob_tables_match_the_code() -> None:
    from fgmodels.registry import list_methods, method_hparams

    text = (REPO / "docs" / "methods.md").read_text()
    for method in list_methods():
        documented = _documented_defaults(_section(text, f"`{method}`"), "| knob |")
        actual = method_hparams(method)
        assert set(documented) == set(actual), f"{method}: documented {sorted(documented)} != hparams {sorted(actual)}"
        wrong = {k: (documented[k], v) for k, v in actual.items() if not _same_default(documented[k], v)}
        assert not wrong, f"{method}: documented default != code default: {wrong}"


def test_training_key_table_matches_the_code() -> None:
    from fgmodels.config import TRAIN_DEFAULTS

    text = (REPO / "docs" / "methods.md").read_text()
    documented = _documented_defaults(_section(text, "Training keys shared by every method"), "| key |")
    assert len(documented) >= 20
    unknown = set(documented) - set(TRAIN_DEFAULTS)
    assert not unknown, f"documented training keys that do not exist: {unknown}"
    wrong = {k: (v, TRAIN_DEFAULTS[k]) for k, v in documented.items() if not _same_default(v, TRAIN_DEFAULTS[k])}
    assert not wrong, f"documented default != TRAIN_DEFAULTS: {wrong}"


def test_every_file_the_search_writes_is_documented() -> None:
    """Names of the files the search and the trainer write (string literals in their code)."""
    sources = [*sorted((REPO / "search").glob("*.py")), REPO / "run_search.py",
               REPO / "fgmodels" / "engine.py", REPO / "fgmodels" / "train.py"]
    names = set()
    for path in sources:
        names |= set(re.findall(r"[\"']([a-z_]+\.(?:csv|md|json|jsonl|yaml|png))[\"']", path.read_text()))
    docs = "\n".join(p.read_text() for p in DOC_FILES)
    assert names, "found no output file names in the code"
    assert not {n for n in names if n not in docs}, f"undocumented output files: {sorted(n for n in names if n not in docs)}"


def test_documented_console_command_is_installed() -> None:
    """The docs present `fgvc-search` as the same CLI as `python run_search.py`."""
    docs = "\n".join(p.read_text() for p in DOC_FILES)
    if "fgvc-search --" not in docs:
        pytest.skip("the docs do not mention the fgvc-search command")
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"].get("scripts", {})
    assert "fgvc-search" in scripts, "pyproject.toml declares no `fgvc-search` console command ([project.scripts])"
