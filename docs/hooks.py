"""MkDocs hooks (mkdocs.yml ``hooks:``): every notebook in ``notebooks/`` becomes a page of the site.

The notebooks live beside the code, outside ``docs/``, where they are run as tests, and new ones
are added often; so they are found here at each build instead of being listed by hand: each
``notebooks/*.ipynb`` is added to the site's files (mkdocs-jupyter renders it) and to the nav's
"Notebooks" section, in file-name order after that section's own pages. No notebooks, no pages:
the build never fails for a notebook that is not there yet.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files

SECTION = "Notebooks"


def _notebooks(config: MkDocsConfig) -> list[Path]:
    """The notebooks beside mkdocs.yml, in file-name order (01_..., 02_...)."""
    return sorted((Path(config.config_file_path).parent / "notebooks").glob("*.ipynb"))


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    """Add each notebook to the nav's Notebooks section (made at the end when the nav has none)."""
    entries = [f"notebooks/{nb.name}" for nb in _notebooks(config)]
    if not entries or config.nav is None:  # no nav: MkDocs lists every page by itself
        return config
    for item in config.nav:
        if isinstance(item, dict) and SECTION in item:
            section = item[SECTION] if isinstance(item[SECTION], list) else [item[SECTION]]
            item[SECTION] = section + [e for e in entries if e not in section]
            break
    else:
        config.nav.append({SECTION: entries})
    return config


# Before mkdocs-jupyter's own on_files (default priority 0), which turns .ipynb files into pages.
@event_priority(50)
def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Add each notebook to the site's files, at notebooks/NAME.ipynb as if it were in docs/."""
    root = Path(config.config_file_path).parent
    for nb in _notebooks(config):
        uri = f"notebooks/{nb.name}"
        if files.get_file_from_path(uri) is None:
            files.append(File(uri, src_dir=str(root), dest_dir=config.site_dir,
                              use_directory_urls=config.use_directory_urls))
    return files


def on_serve(server: Any, config: MkDocsConfig, builder: Any) -> Any:
    """`mkdocs serve` rebuilds when a notebook is added or changed, as for a page in docs/."""
    notebooks = Path(config.config_file_path).parent / "notebooks"
    if notebooks.is_dir():
        server.watch(str(notebooks))
    return server
