"""MkDocs hook: the pages that come from the code, generated at build time and never committed.

* the home page, from README.md (the README stays the single source; its relative links are fixed);
* one page per registered env id, in Gymnasium's section style, with the spaces computed from the env
  made by its id, the config fields with their values and allowed ranges, and a picture of the env
  rendered headless after a few seeded steps;
* the teaching notebooks, executed on copies with the small budget and rendered with their outputs
  (``notebooks/`` keeps no outputs).

Everything is written to a generated folder (``build/docs`` beside mkdocs.yml, or the folder named by
``RECSIM_DOCS_GENERATED``), which is wiped and rewritten on every build, and added to the site's files
from there, so ``mkdocs serve`` never sees its own output as a change. The nav is built here too, so
a new env id or notebook gets its page without editing mkdocs.yml.
"""

from __future__ import annotations

import base64
import dataclasses
import inspect
import logging
import os
import re
import shutil
import time
import typing
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("mkdocs.hooks.recsim_env")
GENERATED_VAR = "RECSIM_DOCS_GENERATED"
EXECUTE_VAR = "RECSIM_DOCS_EXECUTE"  # "0": render the notebooks without running them (quick edits with mkdocs serve)
MARKER = ".recsim-docs-generated"  # only a folder carrying this marker is ever wiped
SEED = 0
RENDER_STEPS = 4
NOTEBOOK_ENV = {"RECSIM_NOTEBOOK_BUDGET": "small", "MPLBACKEND": "module://matplotlib_inline.backend_inline",
                "OMP_NUM_THREADS": "1"}
NOTEBOOK_TIMEOUT_S = 600
API_PAGES = [("recsim_env", "api/recsim_env.md"), ("user model", "api/user_model.md"),
             ("logs and metrics", "api/logs.md"), ("agents", "api/agents.md"),
             ("sequential models", "api/sequential.md"), ("benchmarks", "api/benchmarks.md")]


def _generated_dir() -> Path:
    return Path(os.environ.get(GENERATED_VAR) or ROOT / "build" / "docs").resolve()


def _slug(env_id: str) -> str:
    return env_id.split("/")[-1]


def _notebooks() -> list[Path]:
    return sorted((ROOT / "notebooks").glob("*.ipynb"))


def _notebook_title(path: Path) -> str:
    import nbformat

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return path.stem


def on_config(config: Any) -> Any:
    """The nav: home, one page per env id, the notebooks and the API reference."""
    import recsim_env

    config.nav = [
        {"Home": "index.md"},
        {"Environments": [{"Overview": "envs/index.md"}]
         + [{_slug(env_id): f"envs/{_slug(env_id)}.md"} for env_id in recsim_env.ENV_IDS]},
        {"Notebooks": [{_notebook_title(p): f"notebooks/{p.stem}.md"} for p in _notebooks()]},
        {"API reference": [{title: path} for title, path in API_PAGES]},
    ]
    return config


def on_files(files: Any, config: Any) -> Any:
    """Write every generated page and picture, then add them to the site's files."""
    from mkdocs.structure.files import File

    out = _generated_dir()
    if out.exists():
        if not (out / MARKER).exists() and any(out.iterdir()):
            raise RuntimeError(f"{out} exists without {MARKER}; refusing to wipe a folder the docs build did not make")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / MARKER).write_text("written by docs/hooks.py; wiped on every build\n")
    _write(out / "index.md", home_page())
    write_env_pages(out / "envs")
    write_notebook_pages(out / "notebooks", out / "_run")
    shutil.rmtree(out / "_run", ignore_errors=True)
    for path in sorted(p for p in out.rglob("*") if p.is_file() and p.name != MARKER):
        files.append(File(path.relative_to(out).as_posix(), src_dir=str(out), dest_dir=config.site_dir,
                          use_directory_urls=config.use_directory_urls))
    return files


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


# ---------------------------------------------------------------------------------------------- home


_LINK = re.compile(r"\]\((?!https?://|#|mailto:)([^)\s]+)\)")


def home_page() -> str:
    """README.md with its repository links pointed at the site: a notebook at its rendered page."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")

    def fix(match: re.Match[str]) -> str:
        target = match.group(1)
        if target.startswith("notebooks/") and target.endswith(".ipynb"):
            return f"](notebooks/{Path(target).stem}.md)"
        raise ValueError(f"README.md links to {target!r}, which the docs site does not carry; "
                         "teach docs/hooks.py.home_page where it goes")

    return _LINK.sub(fix, text)


# ------------------------------------------------------------------------------------------ env pages


_ROLE = re.compile(r":(?:class|func|meth|mod|attr|obj):`~?([\w.]+)`")


def _docstring_sections(cls: type) -> dict[str, str]:
    """Gymnasium-style ``## Section`` blocks of an env's docstring, RST roles turned into Markdown."""
    doc = _ROLE.sub(lambda m: f"`{m.group(1).split('.')[-1]}`", inspect.cleandoc(cls.__doc__ or ""))
    sections: dict[str, list[str]] = {}
    current = None
    for line in doc.splitlines():
        if line.startswith("## "):
            current = line[3:].strip()
            sections[current] = []
        elif current is not None:
            sections[current].append(line)
    out = {}
    for name, lines in sections.items():
        start = next((i for i, line in enumerate(lines) if line.startswith(">>>")), len(lines))
        out[name] = "\n".join(lines[:start]).strip()
        if start < len(lines):  # a trailing doctest becomes the page's example
            out["Example"] = "```pycon\n" + "\n".join(lines[start:]).strip() + "\n```"
    return out


def _range(f: dataclasses.Field) -> str:
    """A field's allowed values, in the words of the validation error."""
    from recsim_env.config import _describe_range

    meta = f.metadata
    if meta and any(meta.get(k) is not None for k in ("ge", "gt", "le", "lt")):
        kind = "integer" if isinstance(f.default, int) and not isinstance(f.default, bool) else "float"
        return f"{kind} in `{_describe_range(meta)}`"
    if isinstance(f.default, bool):
        return "`True`, `False`"
    if typing.get_origin(f.type) is typing.Literal or str(f.type).startswith("Literal"):
        args = typing.get_args(f.type) or re.findall(r"'(\w+)'", str(f.type))
        return ", ".join(f"`{a!r}`" for a in args)
    if f.name == "reward":
        return "`'engagement'`, `'click'` or a callable on the response dict"
    return f"`{f.type}`"


#: Meanings of the fields that carry no ``doc`` metadata (choices and flags, not ranges).
FIELD_NOTES = {
    "choice_model": "conditional logit over the shown items and no click, or a cascade down the slate",
    "multi_session": "the user may come back for further sessions until the horizon",
    "observe_user_state": "append the true interest, satiation and budget to the observation",
    "reward": "what a step earns: engagement (time spent), a click, or any function of the response arrays",
    "exploring_starts": "start each episode in a uniformly drawn live state instead of the fixed initial one",
}


def _config_rows(config: Any, owner: str = "") -> list[str]:
    """One table row per scalar field (nested component configs expanded), with this env's value."""
    rows = []
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            rows += _config_rows(value, f"{type(value).__name__} (`{f.name}=`)")
            continue
        shown = repr(value) if not callable(value) else getattr(value, "__name__", "callable")
        doc = (f.metadata.get("doc", "") if f.metadata else "") or FIELD_NOTES.get(f.name, "")
        rows.append(f"| `{f.name}` | {owner or type(config).__name__} | `{shown}` | {_range(f)} | {doc} |")
    return rows


def _space_summary(space: Any) -> str:
    from gymnasium import spaces

    if isinstance(space, spaces.Box):
        return (f"`Box(low, high, shape={space.shape}, dtype={space.dtype})`, bounds in "
                f"`[{float(space.low.min()):g}, {float(space.high.max()):g}]`")
    return f"`{space}` (dtype `{space.dtype}`)"


def _observation_table(env: Any) -> str:
    """Each named part of the flat observation: its slice, shape and bounds, read off the space."""
    layout, space = env.unwrapped.layout, env.observation_space
    parts = [("history", layout.history, (layout.history_length, layout.history_dim)),
             ("candidates", layout.candidates, (layout.n_candidates, layout.item_dim)),
             ("context", layout.context, (2,)),
             ("user_state", layout.user_state, (layout.user_state.stop - layout.user_state.start,))]
    rows = ["| part | slice of `obs` | shape after `layout.split` | bounds (lowest low, highest high) |",
            "|---|---|---|---|"]
    for name, sl, shape in parts:
        if sl.stop == sl.start:
            rows.append(f"| {name} | absent (`observe_user_state=False`) | | |")
            continue
        rows.append(f"| {name} | `[{sl.start}:{sl.stop}]` | `{shape}` | "
                    f"`[{float(space.low[sl].min()):g}, {float(space.high[sl].max()):g}]` |")
    return "\n".join(rows)


def _rollout(env_id: str, render_mode: str) -> Any:
    """The env's frame after ``RENDER_STEPS`` seeded random steps (or fewer, if the user leaves)."""
    import gymnasium as gym

    env = gym.make(env_id, render_mode=render_mode)
    env.action_space.seed(SEED)
    env.reset(seed=SEED)
    for _ in range(RENDER_STEPS):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            break
    frame = env.render()
    env.close()
    return frame


def _text_picture(text: str, path: Path) -> None:
    """Draw an ``ansi`` frame as a PNG, for envs that have no ``rgb_array`` mode."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    lines = text.rstrip("\n").splitlines()
    fig = Figure(figsize=(0.09 * max(len(line) for line in lines) + 0.4, 0.22 * len(lines) + 0.4), dpi=100)
    FigureCanvasAgg(fig)
    fig.text(0.02, 0.5, "\n".join(lines), family="monospace", fontsize=10, va="center")
    fig.savefig(path, facecolor="white")


def _how_to_pass(env_id: str, base: Any) -> str:
    if hasattr(base, "simulator"):
        return ("Every field below is a keyword of `gymnasium.make` and `gymnasium.make_vec` (field names are unique "
                f"across components), e.g. `gymnasium.make(\"{env_id}\", n_items=5000, n_topics=20)`; "
                "`recsim_env.make_config(preset, **overrides)` builds the same config.")
    return (f"`{type(base.config).__name__}`'s own fields are keywords of `gymnasium.make`; the user, choice and "
            "response fields are set by passing a whole component, e.g. "
            f"`gymnasium.make(\"{env_id}\", user=UserConfig(hazard_base=0.05, max_budget=40.0, initial_budget=30.0))`.")


def env_page(env_id: str, out: Path) -> str:
    """One Gymnasium-style page for ``env_id``; writes its picture next to it."""
    import gymnasium as gym
    from matplotlib.image import imsave

    spec = gym.spec(env_id)
    env = gym.make(env_id)
    base = env.unwrapped
    cls = type(base)
    sections = _docstring_sections(cls)
    modes = base.metadata.get("render_modes", [])
    slug = _slug(env_id)
    if "rgb_array" in modes:
        imsave(out / f"{slug}.png", _rollout(env_id, "rgb_array"))
        caption = (f"`render_mode=\"rgb_array\"` after {RENDER_STEPS} random steps "
                   f"(`reset(seed={SEED})`, `action_space.seed({SEED})`)")
    else:
        _text_picture(_rollout(env_id, "ansi"), out / f"{slug}.png")
        caption = (f"this env renders text only (`render_mode=\"ansi\"`); its frame after {RENDER_STEPS} "
                   f"random steps (`reset(seed={SEED})`, `action_space.seed({SEED})`), drawn as a picture")
    ansi = _rollout(env_id, "ansi") if "ansi" in modes else None
    preset = spec.kwargs.get("preset")
    lines = [
        f"# {slug}", "",
        f"![{slug} rendered]({slug}.png)", "",
        f"*{caption}*", "",
        "| | |", "|---|---|",
        f"| Action Space | {_space_summary(env.action_space)} |",
        f"| Observation Space | {_space_summary(env.observation_space)} |",
        f"| import | `gymnasium.make(\"{env_id}\")` |",
        f"| entry point | `{spec.entry_point}`" + (f", preset `{preset}`" if preset else "") + " |",
        f"| max_episode_steps | {spec.max_episode_steps if spec.max_episode_steps else 'none (every episode ends)'} |",
        f"| render modes | {', '.join(f'`{m}`' for m in modes)} |",
    ]
    if hasattr(base, "simulator") and getattr(spec, "vector_entry_point", None):
        lines.append(f"| vector env | `gymnasium.make_vec(\"{env_id}\", num_envs=B, "
                     "vectorization_mode=\"vector_entry_point\")` |")
    lines += ["", "## Description", "", sections.get("Description", ""), "",
              "## Action Space", "", sections.get("Action Space", ""), "",
              f"For this id: {_space_summary(env.action_space)}.", "",
              "## Observation Space", "", sections.get("Observation Space", ""), "",
              f"For this id: {_space_summary(env.observation_space)}."]
    if hasattr(base, "layout"):
        lines += ["", "Computed from the space of the env made by this id:", "", _observation_table(env)]
    lines += ["", "## Rewards", "", sections.get("Rewards", ""), "",
              "## Episode End", "", sections.get("Episode End", ""), ""]
    if spec.max_episode_steps:
        lines += [f"This id truncates at `max_episode_steps={spec.max_episode_steps}`.", ""]
    lines += ["## Arguments", "", sections.get("Arguments", ""), "",
              _how_to_pass(env_id, base), "",
              ("The config fields, with this id's values and the range each is validated against "
               "(an out-of-range value raises an error naming the field and this range):"), "",
              "| field | component | value for this id | allowed | meaning |", "|---|---|---|---|---|",
              *_config_rows(base.config), ""]
    if ansi is not None:
        lines += ["## Rendering", "", f"`render_mode=\"ansi\"` after the same {RENDER_STEPS} seeded steps:", "",
                  "```text", ansi.rstrip("\n"), "```", ""]
    if "Example" in sections:
        lines += ["## Example", "", sections["Example"], ""]
    if "Version History" in sections:
        lines += ["## Version History", "", sections["Version History"], ""]
    env.close()
    return "\n".join(lines)


def write_env_pages(out: Path) -> None:
    import gymnasium as gym

    import recsim_env

    out.mkdir(parents=True, exist_ok=True)
    rows = ["# Environments", "", ("Importing `recsim_env` registers these ids "
                                   "(`gymnasium.make(\"recsim_env:<id>\")` imports the package first):"), "",
            "| id | action space | observation space | max_episode_steps |", "|---|---|---|---|"]
    for env_id in recsim_env.ENV_IDS:
        _write(out / f"{_slug(env_id)}.md", env_page(env_id, out))
        env = gym.make(env_id)
        steps = gym.spec(env_id).max_episode_steps
        rows.append(f"| [`{env_id}`]({_slug(env_id)}.md) | `{env.action_space}` | "
                    f"{_space_summary(env.observation_space)} | {steps or 'none'} |")
        env.close()
    _write(out / "index.md", "\n".join(rows) + "\n")


# ------------------------------------------------------------------------------------------ notebooks


_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _text_block(text: str) -> str:
    text = _ANSI_ESCAPE.sub("", text).rstrip("\n")
    return _output("text", f"```text\n{text}\n```") if text else ""


def _output(kind: str, body: str, markdown: bool = True) -> str:
    """An output set apart from the code cell that made it (``.nb-output`` in stylesheets/extra.css)."""
    return f'<div class="nb-output nb-{kind}"{" markdown" if markdown else ""}>\n\n{body}\n\n</div>'


def notebook_markdown(nb: Any, stem: str, out: Path) -> str:
    """An executed notebook as Markdown: its cells, then each output (pictures as PNG files beside it)."""
    parts: list[str] = []
    n_images = 0
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown":
            parts.append(cell.source)
        elif cell.cell_type == "code":
            if cell.source.strip():
                parts.append(f"```python\n{cell.source.rstrip()}\n```")
            for output in cell.get("outputs", []):
                kind = output.get("output_type")
                if kind == "stream":
                    parts.append(_text_block(output.get("text", "")))
                elif kind in ("display_data", "execute_result"):
                    data = output.get("data", {})
                    if "image/png" in data:
                        n_images += 1
                        name = f"{stem}_cell{index}_{n_images}.png"
                        (out / name).write_bytes(base64.b64decode(data["image/png"]))
                        parts.append(_output("image", f"![output of cell {index}]({name})"))
                    elif "text/html" in data:
                        parts.append(_output("html", data["text/html"].strip(), markdown=False))
                    elif "text/markdown" in data:
                        parts.append(_output("markdown", data["text/markdown"]))
                    elif "text/plain" in data:
                        parts.append(_text_block(data["text/plain"]))
                elif kind == "error":
                    raise RuntimeError(f"{stem}: cell {index} raised {output.get('ename')}: {output.get('evalue')}")
    return "\n\n".join(p for p in parts if p) + "\n"


def write_notebook_pages(out: Path, run_dir: Path) -> None:
    """Execute a copy of every notebook with the small budget and write its page with the outputs.

    The kernel draws with matplotlib's inline backend (headless, like Agg, but it hands each figure
    back as an output), and talks over IPC sockets in a short temporary folder, not unencrypted TCP.
    """
    import tempfile

    import nbformat
    from nbclient import NotebookClient
    from traitlets.config import Config

    out.mkdir(parents=True, exist_ok=True)
    execute = os.environ.get(EXECUTE_VAR, "1") != "0"
    for path in _notebooks():
        nb = nbformat.read(path, as_version=4)
        cwd = run_dir / path.stem
        cwd.mkdir(parents=True, exist_ok=True)
        note = ""
        if execute:
            start = time.perf_counter()
            with tempfile.TemporaryDirectory(prefix="recsim-nb-") as sockets:
                # Configured rather than passed in, so that the client owns the kernel and shuts it down.
                ipc = Config({"KernelManager": {"transport": "ipc", "ip": str(Path(sockets) / "kernel")}})
                NotebookClient(nb, timeout=NOTEBOOK_TIMEOUT_S, kernel_name="python3", config=ipc,
                               resources={"metadata": {"path": str(cwd)}}).execute(env={**os.environ, **NOTEBOOK_ENV})
            log.info("executed notebooks/%s in %.0f s", path.name, time.perf_counter() - start)
        else:
            note = f'!!! note "Not executed"\n    Built with `{EXECUTE_VAR}=0`: the outputs are missing.\n\n'
        _write(out / f"{path.stem}.md", note + notebook_markdown(nb, path.stem, out))
