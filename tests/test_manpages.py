"""The man pages' SYNOPSIS against the argument parsers as they are: every
subcommand, each of its options and arguments, and every top-level option
appears there, so a new command or option cannot ship undocumented."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from mtcd.cli import ctl, daemon
from mtcd.sim import cli as sim_cli

MAN = Path(__file__).resolve().parent.parent / "debian" / "man"

PAGES = {
    "mtcd": (MAN / "mtcd.8", daemon._parser),
    "mtcctl": (MAN / "mtcctl.8", ctl._parser),
    "mtcd-sim": (MAN / "mtcd-sim.1", sim_cli._parser),
}


def synopsis(page: Path) -> list[str]:
    """The SYNOPSIS as plain text, one entry per command line: roff macros
    and font escapes dropped, `.br` (or a new line naming the program)
    starting the next entry."""
    text = page.read_text()
    match = re.search(r"^\.SH SYNOPSIS\n(.*?)^\.SH ", text, re.M | re.S)
    assert match, f"{page.name} has no SYNOPSIS section"
    entries: list[list[str]] = []
    for line in match[1].splitlines():
        if line.startswith(".br"):
            entries.append([])
            continue
        words = line.split(None, 1)
        if not words:
            continue
        if words[0].startswith("."):
            line = words[1] if len(words) > 1 else ""
        line = re.sub(r"\\f[BIRP]", "", line).replace("\\-", "-").replace('"', "")
        if not entries:
            entries.append([])
        entries[-1].append(line)
    return [" ".join(" ".join(e).split()) for e in entries if e]


def leaves(parser: argparse.ArgumentParser, words: tuple[str, ...] = ()):
    """(command words, parser) for every subcommand without subcommands."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield words, parser
    for action in subs:
        for name, child in action.choices.items():
            yield from leaves(child, (*words, name))


def own_options(parser: argparse.ArgumentParser) -> list[tuple[str, ...]]:
    """Each option's spellings (-v, --verbose), help aside."""
    return [tuple(a.option_strings) for a in parser._actions
            if a.option_strings and not isinstance(a, argparse._HelpAction)]


def positionals(parser: argparse.ArgumentParser) -> list[tuple[str, ...]]:
    return [((a.metavar or a.dest).upper(),) for a in parser._actions
            if not a.option_strings and not isinstance(a, argparse._SubParsersAction)]


def _absent(names: list[tuple[str, ...]], tokens: set[str]) -> list[str]:
    return [max(spellings, key=len) for spellings in names if not tokens.intersection(spellings)]


def _entry_for(entries: list[str], prog: str, words: tuple[str, ...]) -> str | None:
    # The program, optional global options, then exactly these command words.
    pattern = re.compile(rf"^{re.escape(prog)}(?: \[[^]]*\])* {re.escape(' '.join(words))}(?: |$)")
    found = [e for e in entries if pattern.match(e)]
    return found[0] if found else None


@pytest.mark.parametrize("prog", sorted(PAGES))
def test_every_subcommand_is_in_the_synopsis(prog):
    page, make_parser = PAGES[prog]
    entries = synopsis(page)
    missing = [" ".join(words) for words, _ in leaves(make_parser()) if _entry_for(entries, prog, words) is None]
    assert missing == [], f"{page.name}: SYNOPSIS lacks {missing}; it has {entries}"


@pytest.mark.parametrize("prog", sorted(PAGES))
def test_every_option_and_argument_is_in_its_subcommands_synopsis(prog):
    page, make_parser = PAGES[prog]
    entries = synopsis(page)
    gaps = []
    for words, leaf in leaves(make_parser()):
        entry = _entry_for(entries, prog, words) or ""
        tokens = set(re.findall(r"[-\w.]+", entry))
        gaps += [f"{' '.join(words)} {name}" for name in _absent(own_options(leaf) + positionals(leaf), tokens)]
    assert gaps == [], f"{page.name}: SYNOPSIS lacks {gaps}"


@pytest.mark.parametrize("prog", sorted(PAGES))
def test_every_top_level_option_is_in_the_synopsis(prog):
    page, make_parser = PAGES[prog]
    tokens = set(re.findall(r"[-\w.]+", " ".join(synopsis(page))))
    missing = _absent(own_options(make_parser()), tokens)
    assert missing == [], f"{page.name}: SYNOPSIS lacks {missing}"


def test_the_synopsis_reader_sees_what_is_missing(tmp_path):
    """The check itself: a page without a subcommand is caught."""
    page = tmp_path / "x.8"
    page.write_text(".TH X 8\n.SH SYNOPSIS\n.B mtcd\n.RB [ \\-\\-config\n.IR PATH ]\n.B once\n"
                    ".RB [ \\-\\-json ]\n.SH DESCRIPTION\n")
    entries = synopsis(page)
    assert entries == ["mtcd [ --config PATH ] once [ --json ]"]
    assert _entry_for(entries, "mtcd", ("once",)) is not None
    assert _entry_for(entries, "mtcd", ("run",)) is None


COMPLETION = MAN.parent / "completion" / "mtcd"


def _complete(line: str) -> list[str]:
    """What the packaged bash completion offers for `line` (cursor at its end)."""
    import shutil
    import subprocess

    if shutil.which("bash") is None:
        pytest.skip("no bash")
    script = (f'source {str(COMPLETION)!r}; COMP_WORDS=($LINE); [[ $LINE == *" " ]] && COMP_WORDS+=(""); '
              'COMP_CWORD=$((${#COMP_WORDS[@]}-1)); _mtcd; printf "%s\\n" "${COMPREPLY[@]}"')
    done = subprocess.run(["bash", "-c", script], env={"LINE": line, "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=10)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


@pytest.mark.parametrize("prog", ["mtcd", "mtcctl"])
def test_bash_completion_offers_every_subcommand(prog):
    parser = PAGES[prog][1]()
    commands = [name for a in parser._actions if isinstance(a, argparse._SubParsersAction) for name in a.choices]
    offered = _complete(f"{prog} ")
    assert [c for c in commands if c not in offered] == []


def test_bash_completion_offers_the_log_levels():
    parser = ctl._parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    level = next(a for a in sub.choices["log-level"]._actions if a.dest == "level")
    assert _complete("mtcctl log-level ") == list(level.choices)
