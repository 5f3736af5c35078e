"""The notebook hook (docs/hooks/notebook.py) and the one walk over a page it is built on (docs/hooks/fences.py).

tests/test_docs.py checks that the notebook's code cells are exactly the
blocks the suite runs; this file checks the walk itself and what the prose
becomes, on a small page that holds every construct the hook rewrites.
"""

from __future__ import annotations

import json
import re

import nbformat

PAGE = """\
# Title

See [the pooling page](pooling.md) and ![a figure of a kernel](figures/k.png).

```python
x = 1
```

<!--pytest-codeblocks:cont-->

```python
print(x + 1)
```

<!--pytest-codeblocks:expected-output-->

```text
2
```

!!! note
    A note's body, indented.

    ```python
    y = 2

    print(y)
    ```

    Still in the note.

!!! tip "Pitfall"
    A titled box.

=== "Tab one"
    In the tab.

Back at the top.

<div class="cnn-explorer" data-mode="conv"></div>

## A section

```console
$ cnnlesson --help
```
"""


def test_walk_sees_every_line_once(docs_hook):
    """Fences, prose and markers together are the page's lines, each once, in order."""
    fences = docs_hook("fences")
    found, markers = fences.page_fences(PAGE)
    seen = []
    for part in fences.walk(PAGE):
        if isinstance(part, fences.Fence):
            seen += range(part.start, part.end + 1)
        else:
            assert PAGE.splitlines()[part.lineno - 1] == part.text
            seen.append(part.lineno)
    assert sorted(seen + sorted(markers)) == list(range(1, len(PAGE.splitlines()) + 1))
    assert seen == sorted(seen), "the walk goes through the page in order"
    assert [p for p in fences.walk(PAGE) if isinstance(p, fences.Fence)] == found
    assert [(f.role, f.info) for f in found] == [
        ("block", "python"),
        ("cont", "python"),
        ("output", "text"),
        ("block", "python"),
        ("block", "console"),
    ]
    # The indented fence keeps its blank line, as written.
    assert found[3].lines == ["y = 2", "", "print(y)"] and found[3].indent == 4


def test_page_cells_from_the_walk(docs_hook):
    notebook = docs_hook("notebook")
    images = {"figures/k.png": b"\x89PNG kernel"}
    cells = notebook.page_cells(PAGE, "page.md", images.get, shift_headings=True)
    kinds = [c.cell_type for c in cells]
    assert kinds == ["markdown", "code", "code", "markdown", "code", "markdown"]
    first, x, x_plus_1, note, y, rest = cells
    # A heading moves one level down on a later page; a link to a page becomes its text; a figure is attached.
    assert first.source.startswith("## Title\n\nSee the pooling page and ![a figure of a kernel](attachment:k.png).")
    assert first.attachments["k.png"]["image/png"] == "iVBORyBrZXJuZWw="
    # A continued fence shares the id of its block; the expected output is the output of the cell before it.
    assert (x.source, x.metadata["cnnlesson"]["block"]) == ("x = 1", "page.md:5")
    assert (x_plus_1.source, x_plus_1.metadata["cnnlesson"]["block"]) == ("print(x + 1)", "page.md:5")
    assert x_plus_1.outputs == [nbformat.v4.new_output("stream", name="stdout", text="2\n")]
    assert x.outputs == []
    # An admonition's title becomes bold text and its body loses the indent (else Markdown shows it as code).
    assert note.source == "**Note**\n\nA note's body, indented."
    assert (y.source, y.metadata["cnnlesson"]["block"]) == ("y = 2\n\nprint(y)", "page.md:24")
    assert rest.source.splitlines() == [
        "Still in the note.",
        "",
        "**Pitfall**",
        "",
        "A titled box.",
        "",
        "**Tab one**",
        "",
        "In the tab.",
        "",
        "Back at the top.",
        "",
        "*(The site shows an interactive explorer here.)*",
        "",
        "### A section",
        "",
        "```console",
        "$ cnnlesson --help",
        "```",
    ]


def test_first_page_keeps_its_headings_and_a_missing_figure_is_named(docs_hook):
    notebook = docs_hook("notebook")
    (cell,) = notebook.page_cells(
        "# Title\n\n![a lost figure](gone.png)\n", "p.md", lambda url: None, shift_headings=False
    )
    assert cell.source == "# Title\n\n*[Figure: a lost figure]*"


def test_repeated_headings_get_the_ids_the_table_of_contents_links_to(docs_hook):
    notebook = docs_hook("notebook")
    heading = '<h{0} id="{1}">{2}<a class="anchor-link" href="#{1}">¶</a></h{0}>'
    html = "".join(
        heading.format(level, slug, text)
        for level, slug, text in [(2, "pooling", "Pooling"), (3, "exercises", "Exercises"), (2, "mnist", "MNIST"),
                                  (3, "exercises", "Exercises"), (3, "step_2", "step_2"), (3, "exercises", "Exercises")]
    )  # fmt: skip
    toc = ["pooling", "exercises", "mnist", "exercises_1", "step_2", "exercises_2"]  # Python-Markdown numbers repeats
    fixed = notebook.match_toc_ids(html, toc)
    assert re.findall(r'<h\d id="([^"]+)">', fixed) == toc
    assert re.findall(r'href="#([^"]+)"', fixed) == toc  # each heading's own anchor link follows its id


def test_every_table_of_contents_entry_of_the_notebook_page_has_its_heading(built_site):
    html = (built_site / "lesson" / "index.html").read_text("utf-8")
    toc = re.findall(r'<a href="#([^"]+)" class="md-nav__link">', html)
    ids = re.findall(r'\bid="([^"]+)"', html)
    assert "exercises_1" in toc, "several lesson pages end in Exercises: the table of contents numbers the repeats"
    assert sorted(set(toc) - set(ids)) == []


def test_the_notebook_is_left_out_of_the_search_index(built_site):
    """The notebook repeats the lesson pages: search lists each hit once, on its lesson page."""
    docs = json.loads((built_site / "search" / "search_index.json").read_text("utf-8"))["docs"]
    locations = [doc["location"] for doc in docs]
    assert any(location.startswith("convolution/") for location in locations)
    assert not [location for location in locations if location.startswith("lesson/")]
