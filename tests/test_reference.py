"""The API reference (docs/reference/) lists the lesson's public API: what the pages and the README use.

Each reference page names its module's members (mkdocstrings' `members:`);
every name a page's code imports from cnnlesson is among them, under the
module where it lives, and every name listed there is used by a page or named
by a page or the README. docs/reference/index.md says what each module is
for, and names the modules left out of the reference.
"""

from __future__ import annotations

import ast
import importlib
import re

import pytest
import yaml
from test_docs import DOCS, PAGES, collect, read_mkdocs_yml

ROOT = DOCS.parent
REFERENCE = DOCS / "reference"
LESSON_PAGES = [page for page in PAGES if not page.is_relative_to(REFERENCE)]
# The command's entry point ([project.scripts]): the README and the pages run it as `cnnlesson ...`.
ENTRY_POINTS = {("cnnlesson.cli", "main")}


def reference_pages() -> dict[str, list[str] | None]:
    """{module: its `members:` list, or None where the page lists none}, from each `::: module` of docs/reference/."""
    found = {}
    for page in sorted(REFERENCE.glob("*.md")):
        text = page.read_text(encoding="utf-8")
        for match in re.finditer(r"^::: (\S+)\n((?:    .*\n?)*)", text, re.MULTILINE):
            options = yaml.safe_load(match.group(2)) or {} if match.group(2).strip() else {}
            found[match.group(1)] = (options.get("options") or {}).get("members")
    return found


def home(module: str, name: str) -> str:
    """The module where `module.name` is defined (a function or class imported from elsewhere lives there)."""
    defined = getattr(getattr(importlib.import_module(module), name), "__module__", None)
    return defined if isinstance(defined, str) and defined.startswith("cnnlesson.") else module


def imported_by_pages() -> dict[tuple[str, str], set[str]]:
    """{(module, name): pages} for every cnnlesson name the pages' python blocks import or spell out."""
    used: dict[tuple[str, str], set[str]] = {}
    for block_id, block in collect(LESSON_PAGES):
        tree = ast.parse(block.code)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("cnnlesson."):
                for alias in node.names:
                    used.setdefault((node.module, alias.name), set()).add(block_id)
            elif isinstance(node, ast.Attribute) and re.fullmatch(r"cnnlesson\.\w+", ast.unparse(node.value)):
                used.setdefault((ast.unparse(node.value), node.attr), set()).add(block_id)
    return used


def named_in_text() -> set[tuple[str, str]]:
    """(module, name) for every `cnnlesson.module.name` of the package written in a page or the README."""
    named = set()
    for path in [*LESSON_PAGES, ROOT / "README.md"]:
        for module, name in re.findall(r"\b(cnnlesson\.[a-z_]+)\.(\w+)", path.read_text(encoding="utf-8")):
            if (ROOT / f"{module.replace('.', '/')}.py").is_file():
                named.add((module, name))
    return named


def listing_problems(pages: dict[str, list[str] | None]) -> list[str]:
    """What is wrong with the reference's `members:` lists: private, missing, misplaced or unused names."""
    used = {(home(module, name), name) for module, name in imported_by_pages()}
    used |= {
        (home(module, name), name) for module, name in named_in_text() if hasattr(importlib.import_module(module), name)
    }
    problems = []
    for module, members in pages.items():
        package = importlib.import_module(module)
        for name in members or []:
            if name.startswith("_"):
                problems.append(f"{module}.{name} is private: leave it out of the reference")
            elif not hasattr(package, name):
                problems.append(f"docs/reference lists {module}.{name}, which does not exist")
            elif home(module, name) != module:
                problems.append(f"{module}.{name} lives in {home(module, name)}: list it there")
            elif (module, name) not in used | ENTRY_POINTS:
                problems.append(f"docs/reference lists {module}.{name}, which no page and not the README uses")
    return problems


def test_every_reference_page_lists_its_members():
    pages = reference_pages()
    assert pages, "docs/reference/ documents no module"
    unlisted = sorted(module for module, members in pages.items() if members is None)
    assert not unlisted, f"reference pages without `members:` (they would show every public name): {unlisted}"


def test_pages_use_only_what_the_reference_lists():
    listed = {(module, name) for module, members in reference_pages().items() for name in members or []}
    missing = {
        f"{module}.{name} (where it lives: {home(module, name)}), used by {sorted(pages)[:3]}"
        for (module, name), pages in imported_by_pages().items()
        if (home(module, name), name) not in listed
    }
    assert not missing, "names the pages use that the API reference does not list:\n" + "\n".join(sorted(missing))


def test_the_reference_lists_only_what_the_pages_and_readme_use():
    problems = listing_problems(reference_pages())
    assert not problems, "\n".join(problems)


def test_the_index_says_what_each_module_is_for():
    """Every module of the package has a reference page with a row in the index, or is named as left out."""
    index = (REFERENCE / "index.md").read_text(encoding="utf-8")
    rows = {
        module: what
        for module, page, what in re.findall(r"^\| \[`(cnnlesson\.(\w+))`\]\(\2\.md\) \| ([^|]+) \|", index, re.M)
    }
    pages = reference_pages()
    assert set(rows) == set(pages), "index.md's table and the reference pages name different modules"
    assert all(len(what.split()) >= 5 for what in rows.values()), rows
    left_out = index.split("Not listed here:", 1)[-1]
    modules = {f"cnnlesson.{path.stem}" for path in (ROOT / "cnnlesson").glob("*.py") if not path.stem.startswith("_")}
    unexplained = sorted(m for m in modules - set(pages) if f"`{m}`" not in left_out)
    assert not unexplained, f"modules neither in the reference nor named as left out in its index: {unexplained}"
    nav = read_mkdocs_yml()["nav"]
    (section,) = [item["API reference"] for item in nav if isinstance(item, dict) and "API reference" in item]
    in_nav = {next(iter(entry.values())) if isinstance(entry, dict) else entry for entry in section}
    assert in_nav == {f"reference/{p.name}" for p in REFERENCE.glob("*.md")}, "mkdocs.yml's API reference nav"


@pytest.mark.parametrize(
    ("name", "problem"),
    [("set_deterministic", "no page and not the README uses"), ("_mps_available", "is private"),
     ("no_such_name", "does not exist")],
)  # fmt: skip
def test_a_wrong_listing_is_found(name, problem):
    """The check above can fail: a listed name no page uses, a private one, one that does not exist."""
    assert listing_problems({"cnnlesson.device": ["get_device"]}) == []
    (found,) = listing_problems({"cnnlesson.device": ["get_device", name]})
    assert f"cnnlesson.device.{name}" in found and problem in found
