"""README's commands cannot drift from the repository: the launch scripts it names exist and every one is
named, its test-tier commands are exactly the tiers in tests/, its examples run the project's environment
as written in a new shell (.venv/bin/python, never a bare python), and it states no test counts (they went
stale with every change)."""
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _readme():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        return f.read()


def test_readme_names_every_launch_script_and_only_existing_ones():
    named = set(re.findall(r"\bscripts/([\w.-]+\.sh)\b", _readme()))
    present = {name for name in os.listdir(os.path.join(ROOT, "scripts")) if name.endswith(".sh")}
    assert named - present == set(), f"README names scripts that do not exist: {sorted(named - present)}"
    unnamed = present - named - {"common.sh"}  # common.sh is sourced by the others, not run
    assert not unnamed, f"scripts README does not mention: {sorted(unnamed)}"


def test_readme_tier_commands_are_the_tiers_in_tests():
    documented = set(re.findall(r"bash scripts/run_tests\.sh ([a-z][a-z0-9_]*)\b", _readme()))
    tests = os.path.join(ROOT, "tests")
    tiers = {d for d in os.listdir(tests) if os.path.isdir(os.path.join(tests, d))
             and any(f.startswith("test_") and f.endswith(".py") for f in os.listdir(os.path.join(tests, d)))}
    assert tiers, "no tier folders under tests/"
    assert documented == tiers, (f"README's run_tests.sh tiers {sorted(documented)} != the folders of tests/ "
                                 f"{sorted(tiers)}: give each tier its command in README's Tests section")


def test_readme_examples_run_the_project_environment():
    """`.venv/bin/python x.py` works in a new shell; a bare `python x.py` needs an activated environment."""
    bare = [line.strip() for line in _readme().splitlines()
            if re.search(r"(?<![\w/.-])python3? (-m (?!venv)\S+|[\w./<>-]+\.py)\b", line)]
    assert not bare, "README examples with a bare python (write .venv/bin/python):\n" + "\n".join(bare)


def test_readme_states_no_test_counts():
    counts = re.findall(r"\b\d[\d,]* (?:tests|passed)\b", _readme())
    assert not counts, f"README states test counts, which drift with every change: {counts}"
