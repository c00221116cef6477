"""The README's promises that can be checked without running anything."""

import subprocess
import sys
from pathlib import Path

from spawner.configref import END, START

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def reference() -> str:
    """The reference as the application generates it (start.py; no package imports the application)."""
    done = subprocess.run([sys.executable, str(ROOT / "start.py"), "--config-reference", "-"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=True)
    return done.stdout.rstrip("\n")


def test_readme_starts_with_the_two_commands():
    head = README[:1500]
    assert "make run" in head and "make test" in head


def test_configuration_reference_is_current():
    section = README[README.index(START):README.index(END) + len(END)]
    assert section == reference(), "run: make docs"


def test_every_setting_in_the_operator_config_exists():
    from traitlets.config import Config, PyFileConfigLoader

    config: Config = PyFileConfigLoader("nbpool_config.py", path=str(ROOT / "config")).load_config()
    documented = reference()  # every setting of every class the application configures
    for section, values in config.items():
        for name in values:
            assert f"`c.{section}.{name}`" in documented, f"c.{section}.{name} is not a setting"


def test_ci_runs_the_readme_test_command():
    assert "make test" in (ROOT / ".ci" / "run").read_text()
