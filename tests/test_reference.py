"""The documentation stays true to the code: the scenario reference (docs/scenario.md) is what
sim/reference.py renders from the schema now, every key of the schema is described, the example
scenarios in the docs load, and every relative link in README.md and docs/ resolves."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml

from sim import default_scenario, load_scenario
from sim.reference import REGENERATE, scenario_reference, scenario_specs

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def test_docs_scenario_md_is_the_generated_reference():
    committed = (DOCS / "scenario.md").read_text()
    assert committed == scenario_reference(), (
        f"docs/scenario.md differs from the scenario schema's reference: regenerate it with `{REGENERATE}`")


def test_every_key_of_every_spec_is_described():
    missing = [f"{m.__name__}.{name}" for m in scenario_specs() for name, f in m.model_fields.items()
               if not (f.description or "").strip()]
    assert missing == [], f"keys without a description (pydantic Field(description=...)): {missing}"


def test_the_reference_names_every_key_and_every_member():
    text = scenario_reference()
    for m in scenario_specs():
        for name in m.model_fields:
            assert f"| `{name}` |" in text, f"{m.__name__}.{name}"
    for key in ("kind: explicit", "process: closed_loop", "shape: diurnal", "dist: quantiles"):
        assert f"### `{key}`" in text
    # The defaults shown are the scenario's own.
    assert "| `max_num_batched_tokens` | int | `8192` | >= 1 |" in text
    assert "| `profile` | [mapping](#profile) | `{kind: roofline}` |" in text
    assert "| `classes` | list of [mappings](#workload-classes) | `[{name: trace}]` | at least one |" in text


def _code_blocks(page: Path, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", page.read_text(), re.S | re.M)


@pytest.mark.parametrize("page", ["README.md", "docs/getting-started.md", "docs/scenarios-guide.md"])
def test_the_example_scenarios_in_the_docs_load(page):
    path = ROOT / page
    blocks = [yaml.safe_load(b) for b in _code_blocks(path, "yaml")] + \
             [tomllib.loads(b) for b in _code_blocks(path, "toml")]
    scenarios = [b for b in blocks if isinstance(b, dict) and "workload" in b]
    assert scenarios, f"{page}: no example scenario found"
    for data in scenarios:
        load_scenario(data)


def test_the_guide_states_the_default_scenarios_own_settings():
    s, guide = default_scenario(), (DOCS / "scenarios-guide.md").read_text()
    assert f"`name: {s.name}`" in guide and f"`measurement.warmup_s: {s.measurement.warmup_s:g}`" in guide
    assert f"`profile: {{kind: {s.profile.kind}}}`" in guide


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M)
    return ({_slug(h) for h in re.findall(r"^#+ (.+)$", text, re.M)}
            | set(re.findall(r'<a id="([^"]+)"></a>', text)))


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M)
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+://", target):
            continue
        file, _, anchor = target.partition("#")
        dest = (page.parent / file).resolve() if file else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target}: no such heading in {dest.name}")
    assert broken == [], f"{page.relative_to(ROOT)}: {broken}"
