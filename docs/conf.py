"""Sphinx configuration of the jointseg documentation (MyST Markdown, API from the docstrings)."""

from datetime import date
from importlib.metadata import version as _version

project = "jointseg"
author = "jointseg developers"
copyright = f"{date.today().year}, {author}"
release = _version("jointseg")
version = release

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]

# .rst first: autosummary writes its API stubs with the first suffix, and they are reST.
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
master_doc = "index"
exclude_patterns = ["_build", "**.ipynb_checkpoints", "generated/**.ipynb"]
templates_path = ["_templates"]

# Notebooks are committed executed (a slow test re-executes them); the docs only render them.
nb_execution_mode = "off"
myst_enable_extensions = ["colon_fence", "dollarmath", "deflist"]
myst_heading_anchors = 3

autosummary_generate = True
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": False}
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = True
napoleon_use_param = True
napoleon_custom_sections = [("Params", "Parameters")]

html_theme = "sphinx_book_theme"
html_title = "jointseg"
html_static_path = ["_static"]
html_theme_options = {"repository_url": "https://github.com/jointseg/jointseg", "use_repository_button": False}
