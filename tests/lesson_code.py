"""The lesson's code as the pages print it: one definition pulled out of a page's python blocks."""

import ast
from pathlib import Path

from pytest_codeblocks.main import extract_from_file

DOCS = Path(__file__).resolve().parents[1] / "docs"


def page_blocks(page: str) -> list:
    """The python blocks of docs/<page>, continued ones merged, as pytest-codeblocks collects them."""
    return [block for block in extract_from_file(DOCS / page) if block.syntax == "python"]


def page_definition(page: str, name: str):
    """The class or function `name` exactly as docs/<page> defines it, with its block's imports (nothing else runs)."""
    for block in page_blocks(page):
        tree = ast.parse(block.code)
        if any(isinstance(node, (ast.ClassDef, ast.FunctionDef)) and node.name == name for node in tree.body):
            kept = [
                node for node in tree.body
                if isinstance(node, (ast.Import, ast.ImportFrom))
                or (isinstance(node, (ast.ClassDef, ast.FunctionDef)) and node.name == name)
            ]  # fmt: skip
            namespace = {"__name__": f"docs.{page}"}
            exec(compile(ast.Module(body=kept, type_ignores=[]), f"<docs/{page}:{block.lineno}>", "exec"), namespace)
            return namespace[name]
    raise LookupError(f"docs/{page} defines no {name}")
