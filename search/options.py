"""Command-line options, declared once.

Every option of the search CLI is an :class:`Option`: the fields of
:class:`search.plan.SearchPlan` carry theirs as dataclass metadata (those are
saved with the search), and :data:`RUN_OPTIONS` holds the few that only steer
one run of the driver. The argparse parser, the ``--help`` defaults, the value
checks, the list of options that ``--resume`` ignores and the plan printout
sections are all read from these declarations, so an option is added in one
place. Nothing here imports Ray, torch or the method registry: the parser is
built before ``--plugin`` modules are made visible to the registry.
"""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping

# What --resume does with an option given on its command line.
IGNORED = "ignored"  # the search continues with the value saved in its plan; a note says so
REPLACES = "replaces"  # the given value replaces the saved one (e.g. a new cluster address)
LOCATES = "locates"  # names the search to continue
APPLIES = "applies"  # steers this run of the driver only

SAME = object()  # Option.full: the same default as the CPU demo
CPU_DEMO = "synthetic data and no GPU"  # when the CPU-demo defaults apply


class OptionError(ValueError):
    """A CLI option that cannot work; the message names the option and a fix."""


@dataclass(frozen=True)
class Rule:
    """What a value must be: its Python type and a test, named for messages."""

    kind: type
    text: str  # completes "--flag must be ..."
    test: Callable[[Any], bool]

    def check(self, flag: str, value: Any, fix: str) -> Any:
        if self.kind is float and _is_number(value):
            value = float(value)
        if isinstance(value, bool) or not isinstance(value, self.kind) or not self.test(value):
            raise OptionError(f"{flag} must be {self.text}, got {value!r}. Fix: {fix}")
        return value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


POSITIVE_INT = Rule(int, "a positive integer", lambda v: v >= 1)
NON_NEGATIVE_INT = Rule(int, "a non-negative integer", lambda v: v >= 0)
ABOVE_ONE = Rule(float, "> 1", lambda v: v > 1)
POSITIVE = Rule(float, "> 0", lambda v: v > 0)
NON_NEGATIVE = Rule(float, ">= 0", lambda v: v >= 0)


def one_of(choices: tuple[str, ...]) -> Rule:
    return Rule(str, f"one of {', '.join(choices)}", lambda v: v in choices)


@dataclass(frozen=True)
class Option:
    """One CLI option: how it is parsed, defaulted, checked, shown and resumed."""

    help: str
    demo: Any = None  # default of the CPU demo (also the plan field's default); None: found at resolution
    full: Any = SAME  # default outside the CPU demo; SAME: as the demo; None: found at resolution
    found: str = ""  # for --help: how a default left to resolution is found
    rule: Rule | None = None
    fix: str = ""  # the "Fix: ..." of a value the rule refuses ({field} placeholders: other plan values)
    resume: str = IGNORED
    section: str | None = None  # the line of the plan printout that shows the value
    flag: str = ""  # default: --field-name
    cli: Mapping[str, Any] = field(default_factory=dict)  # extra argparse arguments
    dest: str = ""  # set from the plan field name, or given for a run option

    def default_for(self, cpu_demo: bool) -> Any:
        return self.demo if cpu_demo or self.full is SAME else self.full

    def help_text(self) -> str:
        def show(value: Any) -> str:
            if value is None:
                return self.found
            if isinstance(value, bool):
                return "on" if value else "off"
            return f"{value:g}" if isinstance(value, float) else str(value)

        if self.full is SAME:
            default = show(self.demo) if self.demo is not None or self.found else ""
            return f"{self.help} (default: {default})" if default else self.help
        return f"{self.help} (CPU demo: {show(self.demo)}; otherwise: {show(self.full)})"


def option(help: str, **kw: Any) -> Any:
    """A SearchPlan field declared as a CLI option; its default is the CPU demo's."""
    opt = Option(help=help, **kw)
    if opt.cli.get("action") == "append":
        return field(default_factory=list, metadata={"option": opt})
    return field(default=opt.demo, metadata={"option": opt})


RUN_OPTIONS = (
    Option("continue the interrupted search --name (finished trials are kept)", resume=APPLIES, dest="resume",
           cli={"action": "store_true"}),
    Option("fix a config key for all trials (repeatable)", dest="set", flag="--set",
           cli={"action": "append", "default": [], "metavar": "KEY=VALUE"}),
    Option("memory of one worker GPU, to check --gpus-per-trial packing", found="the local GPU's",
           rule=POSITIVE, fix="e.g. --gpu-memory-gb 80", dest="gpu_memory_gb"),
    Option("print the space and the plan, start nothing", resume=APPLIES, dest="dry_run", cli={"action": "store_true"}),
    Option("skip the single test-split evaluation at the end", resume=APPLIES, dest="no_test",
           cli={"action": "store_true"}),
)


def plan_options() -> Iterator[Option]:
    """The options saved in a search plan, in declaration order."""
    from search.plan import SearchPlan

    for f in dataclasses.fields(SearchPlan):
        opt = f.metadata.get("option")
        if opt is not None:
            yield dataclasses.replace(opt, dest=f.name)


def all_options() -> list[Option]:
    return [*plan_options(), *RUN_OPTIONS]


def flag_of(opt: Option) -> str:
    return opt.flag or "--" + opt.dest.replace("_", "-")


def build_parser(prog: str, description: str, epilog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description, epilog=epilog,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    for opt in all_options():
        kwargs: dict[str, Any] = {"dest": opt.dest, "default": None, "help": opt.help_text().replace("%", "%%")}
        if opt.rule is not None and "action" not in opt.cli:
            kwargs["type"] = opt.rule.kind
        kwargs.update(opt.cli)
        parser.add_argument(flag_of(opt), **kwargs)
    return parser


def ignored_on_resume(args: argparse.Namespace) -> list[str]:
    """The options given with --resume that the saved plan overrules."""
    return [flag_of(o) for o in all_options()
            if o.resume == IGNORED and getattr(args, o.dest, None) is not None and getattr(args, o.dest) != []]
