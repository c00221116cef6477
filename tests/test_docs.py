"""The README's promises that can be checked without running anything."""

from pathlib import Path

from spawner.configref import END, START, reference

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_readme_starts_with_the_two_commands():
    head = README[:1500]
    assert "make run" in head and "make test" in head


def test_configuration_reference_is_current():
    section = README[README.index(START):README.index(END) + len(END)]
    assert section == reference(), "run: .venv/bin/python -m spawner.configref README.md"


def test_every_setting_in_the_operator_config_exists():
    from traitlets.config import Config, PyFileConfigLoader

    config: Config = PyFileConfigLoader("nbpool_config.py", path=str(ROOT / "config")).load_config()
    known = {cls.__name__: set(cls.class_trait_names(config=True)) for cls in __import__(
        "spawner.configref", fromlist=["_classes"])._classes()}
    for section, values in config.items():
        assert section in known, section
        assert set(values) <= known[section], (section, set(values) - known[section])


def test_ci_runs_the_readme_test_command():
    assert "make test" in (ROOT / ".ci" / "run").read_text()
