"""The documentation site builds with ``mkdocs build --strict`` and carries what the code generates.

The quick build skips notebook execution (``RECSIM_DOCS_EXECUTE=0``) and checks the pages generated
from the code: the home page from README.md, one page per env id with its rendered picture and the
spaces of the env made by that id, and the API reference. The slow test runs the whole build, the
notebooks executed on the small budget, and checks their outputs are on their pages.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import nbformat
import pytest

import recsim_env

pytest.importorskip("mkdocs")
pytest.importorskip("material")
pytest.importorskip("mkdocstrings_handlers.python")

ROOT = Path(__file__).resolve().parents[2]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
IMG = re.compile(r'<img[^>]*\bsrc="([^"]+)"')


def load_hooks():
    """docs/hooks.py is no package module: load it from its file, as mkdocs does."""
    spec = importlib.util.spec_from_file_location("recsim_docs_hooks", ROOT / "docs" / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build(tmp: Path, execute: bool) -> tuple[Path, Path, str]:
    """``mkdocs build --strict`` into ``tmp``; returns the site, the generated folder and the build log."""
    site, generated = tmp / "site", tmp / "generated"
    env = {**os.environ, "RECSIM_DOCS_GENERATED": str(generated), "RECSIM_DOCS_EXECUTE": "1" if execute else "0",
           "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"),
                           "-d", str(site)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
                          check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert "WARNING" not in output, [line for line in output.splitlines() if "WARNING" in line]
    return site, generated, output


def images(page: Path) -> list[Path]:
    """The files the page's ``<img>`` tags point at, resolved like a browser would."""
    return [(page.parent / src).resolve() for src in IMG.findall(page.read_text(encoding="utf-8"))]


def assert_png(path: Path, min_bytes: int) -> None:
    assert path.is_file(), path
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and len(data) >= min_bytes, (path, len(data))


@pytest.fixture(scope="module")
def quick_site(tmp_path_factory):
    return build(tmp_path_factory.mktemp("docs"), execute=False)


def test_quick_build_is_strict_and_warning_free(quick_site):
    site, _, output = quick_site
    assert "Documentation built" in output
    assert (site / "index.html").is_file() and (site / "objects.inv").is_file()


def test_home_page_is_the_readme_with_notebook_links_pointing_at_their_pages(quick_site):
    site, _, _ = quick_site
    home = (site / "index.html").read_text(encoding="utf-8")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for heading in re.findall(r"^## (.+)$", readme, flags=re.MULTILINE):
        assert f">{heading}<" in home, heading
    for stem in (p.stem for p in (ROOT / "notebooks").glob("*.ipynb")):
        assert f'href="notebooks/{stem}/"' in home
        assert (site / "notebooks" / stem / "index.html").is_file()
    assert ".ipynb\"" not in home


def test_every_env_id_has_a_page_with_its_picture_and_computed_spaces(quick_site):
    site, _, _ = quick_site
    for env_id in recsim_env.ENV_IDS:
        page = site / "envs" / env_id.split("/")[-1] / "index.html"
        assert page.is_file(), env_id
        html = page.read_text(encoding="utf-8")
        env = gym.make(env_id)
        assert str(env.action_space) in html and env_id in html
        shape = getattr(env.observation_space, "shape", None)
        assert (f"shape={shape}" if shape else str(env.observation_space)) in html
        for heading in ("Description", "Action Space", "Observation Space", "Rewards", "Episode End", "Arguments"):
            assert f'id="{heading.lower().replace(" ", "-")}"' in html, (env_id, heading)
        pictures = images(page)
        assert pictures, env_id
        for picture in pictures:
            assert picture.is_relative_to(site.resolve())
            assert_png(picture, min_bytes=5_000)
        env.close()


def test_env_page_ranges_are_the_ones_validation_enforces(quick_site):
    """The page's allowed range for ``n_items`` is the one in the error gym.make raises."""
    site, _, _ = quick_site
    html = (site / "envs" / "InterestDrift-v0" / "index.html").read_text(encoding="utf-8")
    with pytest.raises(ValueError, match=r"allowed \[100, 100000\]"):
        gym.make("recsim_env/InterestDrift-v0", n_items=10)
    row = re.search(r"<code>n_items</code>.*?</tr>", html, flags=re.DOTALL).group(0)
    assert "[100, 100000]" in row and "<code>1000</code>" in row


def test_env_pictures_are_deterministic(quick_site, tmp_path):
    """The same seeded steps drawn again give the built picture byte for byte."""
    site, _, _ = quick_site
    hooks = load_hooks()
    for env_id in ("recsim_env/SlateDrift-v0", "recsim_env/TabularDrift-v0"):
        hooks.env_page(env_id, tmp_path)
        slug = env_id.split("/")[-1]
        assert (tmp_path / f"{slug}.png").read_bytes() == (site / "envs" / f"{slug}.png").read_bytes()


def test_api_pages_list_known_symbols(quick_site):
    site, _, _ = quick_site
    html = "".join(p.read_text(encoding="utf-8") for p in (site / "api").glob("*/index.html"))
    for symbol in ("recsim_env.envs.RecommendationEnv", "recsim_env.config.EnvConfig",
                   "recsim_env.tabular.value_iteration", "agents.ope.estimate_all", "agents.base.Recommender", "agents.dqn.DQNConfig",
                   "benchmarks.stats", "agents.sequential.click.fit_click_head"):
        assert f'id="{symbol}"' in html, symbol


def test_unexecuted_notebook_pages_say_so(quick_site):
    site, _, _ = quick_site
    page = (site / "notebooks" / "01_simulated_user" / "index.html").read_text(encoding="utf-8")
    assert "Not executed" in page and not images(site / "notebooks" / "01_simulated_user" / "index.html")


def test_readme_link_the_site_cannot_carry_is_an_error(monkeypatch, tmp_path):
    hooks = load_hooks()
    (tmp_path / "README.md").write_text("see [the plot](results/quick/plot.png) and "
                                        "[nb](notebooks/01_x.ipynb) and [web](https://example.org)\n")
    monkeypatch.setattr(hooks, "ROOT", tmp_path)
    with pytest.raises(ValueError, match="results/quick/plot.png"):
        hooks.home_page()
    (tmp_path / "README.md").write_text("[nb](notebooks/01_x.ipynb) and [web](https://example.org)\n")
    assert hooks.home_page() == "[nb](notebooks/01_x.md) and [web](https://example.org)\n"


def test_generated_folder_without_marker_is_not_wiped(monkeypatch, tmp_path):
    hooks = load_hooks()
    (tmp_path / "keep.txt").write_text("not the docs build's")
    monkeypatch.setenv(hooks.GENERATED_VAR, str(tmp_path))
    with pytest.raises(RuntimeError, match="refusing to wipe"):
        hooks.on_files([], None)
    assert (tmp_path / "keep.txt").is_file()


@pytest.mark.slow
def test_full_build_renders_the_executed_notebooks(tmp_path):
    """The whole site, notebooks executed on the small budget: each notebook page shows its outputs."""
    site, generated, output = build(tmp_path, execute=True)
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        page = site / "notebooks" / path.stem / "index.html"
        html = page.read_text(encoding="utf-8")
        assert "Not executed" not in html
        assert 'class="nb-output nb-image"' in html and 'class="nb-output nb-text"' in html, path.name
        pictures = images(page)
        assert pictures, path.name
        for picture in pictures:
            assert_png(picture, min_bytes=5_000)
        assert f"executed notebooks/{path.name}" in output
    assert not (generated / "_run").exists()
    for path in (ROOT / "notebooks").glob("*.ipynb"):  # the build ran copies: the sources stay without outputs
        nb = nbformat.read(path, as_version=4)
        assert not any(cell.get("outputs") for cell in nb.cells if cell.cell_type == "code"), path.name
