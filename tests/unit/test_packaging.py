"""Guards from DESIGN.md: one import namespace, and nothing that can shadow another package."""
from __future__ import annotations

import importlib.metadata
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_the_distribution_installs_only_the_meseta_namespace():
    dist = importlib.metadata.distribution("meseta")
    top_level = (dist.read_text("top_level.txt") or "").split()
    assert top_level == ["meseta"]
    owners = {name for name, dists in importlib.metadata.packages_distributions().items()
              if "meseta" in dists}
    assert owners == {"meseta"}


def test_no_root_conftest_and_repo_root_not_importable():
    assert not (ROOT / "conftest.py").exists()
    assert str(ROOT) not in [str(pathlib.Path(p).resolve()) for p in sys.path if p]


def test_every_component_is_under_meseta():
    import meseta.agent
    import meseta.dns
    import meseta.frameworks.chronos
    import meseta.frameworks.marathon
    import meseta.lb
    import meseta.master
    assert pathlib.Path(meseta.dns.__file__).parent == ROOT / "dns"
    assert pathlib.Path(meseta.master.__file__).parent == ROOT / "master"
