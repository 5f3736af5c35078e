"""Turn the lesson pages into one Jupyter notebook, so it cannot drift from them.

`mkdocs build` and `mkdocs serve` run this hook (`hooks:` in mkdocs.yml).
It reads the lesson pages in nav order (every page but the API reference
and the results page) and writes `.cache/notebook/lesson.ipynb`:

- every ```` ```python ```` fence becomes one code cell, its text unchanged;
  the cell's metadata `cnnlesson.block` is the `page:line` id of the test
  that runs it (a fence after `<!--pytest-codeblocks:cont-->` shares the id
  of the fence it continues), so `tests/test_docs.py` can check that the
  cells are exactly what the test suite runs. The page is read once, by
  `fences.walk` (pytest-codeblocks' own reading of the fences, the one the
  tests use, and the prose lines between them);
- the expected output after `<!--pytest-codeblocks:expected-output-->`
  becomes that cell's output;
- the prose becomes markdown cells: admonitions and content tabs turn into
  bold titles, links to other pages into plain text, headings of later
  pages move one level down, and figures are embedded as attachments.

The notebook joins the site as `lesson.ipynb`, which mkdocs-jupyter renders
as a page with a download button (`include_source: true`). Its first code
cell installs the cnnlesson version the site documents (`install_cell`).
Each lesson page gets "Open in Colab" and "Download notebook" links; the
Colab one opens `lesson.ipynb` from the repository's `notebook` branch,
which `.github/workflows/release.yml` publishes with every release, and is
derived from mkdocs.yml's `repo_url`.
"""

import base64
import importlib.util
import posixpath
import re
from collections.abc import Callable
from pathlib import Path

import nbformat
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File
from mkdocs.utils import get_relative_url

import cnnlesson
from cnnlesson.files import write_text_atomic

NOTEBOOK = "lesson.ipynb"
EXCLUDED = ("reference/", "results.md")
NOTE = (
    "*This notebook is generated from the pages of the lesson's site, and the "
    "site's test suite runs every code cell. The first code cell installs the "
    "package; outside a notebook, run `pip install cnnlesson` once instead.*"
)
# The branch of repo_url that release.yml publishes lesson.ipynb to, for Colab.
NOTEBOOK_BRANCH = "notebook"

CONTAINER = re.compile(r'^(\s*)(?:!!!|\?\?\?\+?)\s+([\w-]+)(?:\s+"([^"]*)")?\s*$')
TAB = re.compile(r'^(\s*)===\+?\s+"([^"]*)"\s*$')
EXPLORER = re.compile(r'^\s*<div class="cnn-explorer"[^>]*></div>\s*$')
IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)\)(\{[^}]*\})?")
PAGE_LINK = re.compile(r"(?<!!)\[([^\]]+)\]\((?!https?:)[^)\s]*\)")
HEADING = re.compile(r"^(#{1,5}) ")


def _sibling(name: str):
    """Another module of docs/hooks/, loaded by its path as mkdocs loads hooks."""
    spec = importlib.util.spec_from_file_location(f"cnnlesson_docs_{name}", Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fences = _sibling("fences")  # pytest-codeblocks' reading of the fences, shared with tests/test_docs.py


def lesson_pages(nav) -> list[str]:
    """The lesson's Markdown pages, in nav order, from mkdocs.yml's `nav`."""
    pages = []

    def walk(item):
        if isinstance(item, str):
            if item.endswith(".md") and not item.startswith(EXCLUDED):
                pages.append(item)
        elif isinstance(item, dict):
            for value in item.values():
                walk(value)
        elif isinstance(item, list):
            for value in item:
                walk(value)

    walk(nav)
    return pages


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def page_cells(text: str, page: str, resolve_image: Callable[[str], bytes | None], shift_headings: bool) -> list:
    """The cells of one page; `resolve_image(url)` gives a figure's PNG bytes, or None.

    The page comes from `fences.walk`, the one reading of its lines: fences
    become cells (or stay in the prose), and each prose line is rewritten for
    a notebook on its own. Admonitions and tabs are the only nesting kept
    track of here, to take their bodies' indent off.
    """
    cells, markdown, attachments = [], [], {}
    containers: list[int] = []  # body indents of the open admonitions / tabs

    def flush():
        source = "\n".join(markdown).strip("\n")
        if source:
            cell = nbformat.v4.new_markdown_cell(source)
            if attachments:
                cell.attachments = dict(attachments)
            cells.append(cell)
        markdown.clear()
        attachments.clear()

    def embed(match):
        alt, url = match.group(1), match.group(2)
        data = resolve_image(url)
        if data is None:
            return f"*[Figure: {alt}]*"
        name = url.rsplit("/", 1)[-1]
        attachments[name] = {"image/png": base64.b64encode(data).decode("ascii")}
        return f"![{alt}](attachment:{name})"

    def close_containers(indent: int) -> None:
        while containers and indent < containers[-1]:
            containers.pop()

    def add_fence(fence) -> None:
        close_containers(fence.indent)
        source = "\n".join(fence.lines)
        if fence.role == "output":
            last = next(c for c in reversed(cells) if c.cell_type == "code")
            last.outputs = [nbformat.v4.new_output("stream", name="stdout", text=source + "\n")]
        elif fence.info == "python":
            flush()
            cells.append(nbformat.v4.new_code_cell(source, metadata={"cnnlesson": {"block": f"{page}:{fence.block}"}}))
        else:
            markdown.extend(["`" * fence.ticks + fence.info, *fence.lines, "`" * fence.ticks])

    def add_prose(line: str) -> None:
        if line.strip():
            close_containers(_indent(line))
        header = CONTAINER.match(line) or TAB.match(line)
        if header:
            # A tab is titled by its label; `!!! note` is titled "Note", `!!! note "Pitfall"` "Pitfall".
            title = header.group(2)
            if header.re is CONTAINER:
                title = title.capitalize() if header.group(3) is None else header.group(3)
            markdown.extend([f"**{title}**", ""] if title else [])
            containers.append(_indent(line) + 4)
            return
        if EXPLORER.match(line):
            markdown.append("*(The site shows an interactive explorer here.)*")
            return
        body = line[min(containers[-1] if containers else 0, _indent(line)) :]
        if shift_headings and HEADING.match(body):
            body = "#" + body
        body = IMAGE.sub(embed, body)
        markdown.append(PAGE_LINK.sub(r"\1", body))

    for part in fences.walk(text):
        if isinstance(part, fences.Fence):
            add_fence(part)
        else:
            add_prose(part.text)
    flush()
    return cells


def build_notebook(
    docs_dir: Path,
    pages: list[str],
    resolve_image: Callable[[str, str], bytes | None],
    render: Callable[[str, str], str] = lambda text, page: text,
) -> nbformat.NotebookNode:
    """One notebook from `pages` (paths under `docs_dir`); `resolve_image(page, url)` finds figures.

    `render(text, page)` rewrites a page's Markdown first, as the site's other
    hooks do (it puts in the measured numbers).
    """
    cells = []
    for k, page in enumerate(pages):
        text = render((docs_dir / page).read_text(encoding="utf-8"), page)
        cells += page_cells(text, page, lambda url, page=page: resolve_image(page, url), shift_headings=k > 0)
    # Under the title: where the notebook comes from and what it needs.
    title, _, rest = cells[0].source.partition("\n")
    cells[0].source = f"{title}\n\n{NOTE}\n{rest}"
    cells.insert(1, install_cell())
    for k, cell in enumerate(cells):
        cell.id = f"cell-{k}"  # fixed ids: the same pages give the same file
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata.kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata.language_info = {"name": "python"}
    nbformat.validate(nb)
    return nb


def install_cell() -> nbformat.NotebookNode:
    """The notebook's first code cell: installs the cnnlesson version that the site documents."""
    source = f"%pip install cnnlesson=={cnnlesson.__version__}"
    return nbformat.v4.new_code_cell(source, metadata={"cnnlesson": {"install": True}})


def colab_url(repo_url: str) -> str:
    """The Colab address of the published notebook, from mkdocs.yml's `repo_url` (a GitHub repository)."""
    match = re.fullmatch(r"https://github\.com/([^/]+)/([^/]+?)/?", repo_url or "")
    if match is None:
        raise ValueError(f"repo_url: expected https://github.com/OWNER/REPO, got {repo_url!r}")
    owner, repo = match.groups()
    return f"https://colab.research.google.com/github/{owner}/{repo}/blob/{NOTEBOOK_BRANCH}/{NOTEBOOK}"


def _image_bytes(files) -> Callable[[str, str], bytes | None]:
    def resolve(page: str, url: str) -> bytes | None:
        uri = (Path(page).parent / url).as_posix()
        file = files.get_file_from_path(uri)
        return None if file is None else file.content_bytes

    return resolve


def results_renderer(docs_dir: Path) -> Callable[[str, str], str]:
    """hooks/results.py's substitution, so the notebook quotes the numbers the pages quote."""
    results = _sibling("results")
    measured = results.load(docs_dir)
    # No tooltips: a notebook shows raw HTML titles poorly; its prose names the results page.
    return lambda text, page: results.render(text, measured, page, tooltips=False)


# After hooks/figures.py (its figures are embedded), before mkdocs-jupyter wraps .ipynb files.
@event_priority(50)
def on_files(files, config):
    docs_dir = Path(config.docs_dir)
    nb = build_notebook(docs_dir, lesson_pages(config.nav), _image_bytes(files), results_renderer(docs_dir))
    path = Path(config.config_file_path).parent / ".cache" / "notebook" / NOTEBOOK
    path.parent.mkdir(parents=True, exist_ok=True)
    text = nbformat.writes(nb)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        write_text_atomic(path, text)
    # A File with a real src_dir, not File.generated: mkdocs-jupyter's wrapper
    # reads the notebook through `src_dir`, which generated files lack.
    files.append(
        File(NOTEBOOK, src_dir=str(path.parent), dest_dir=config.site_dir, use_directory_urls=config.use_directory_urls)
    )
    return files


NBCONVERT_CDN_SCRIPTS = re.compile(
    r"<!-- Load mathjax -->.*?<!-- End of mathjax configuration -->"  # the site renders math itself (KaTeX)
    r'|<script type="module">\s*document\.addEventListener\("DOMContentLoaded".*?mermaid.*?</script>',
    re.DOTALL,
)


def on_page_markdown(markdown, page, config, files):
    # Under each lesson page's title: the whole lesson as a notebook, in Colab or downloaded.
    if page.file.src_uri not in lesson_pages(config.nav):
        return markdown
    # mkdocs-jupyter copies the .ipynb next to the notebook page's index.html.
    notebook = files.get_file_from_path(NOTEBOOK)
    download = get_relative_url(posixpath.join(posixpath.dirname(notebook.dest_uri), NOTEBOOK), page.file.url)
    links = (
        f"[Open in Colab]({colab_url(config.repo_url)}){{ .md-button }} "
        f'<a href="{download}" class="md-button" download>Download notebook</a>'
    )
    title, newline, rest = markdown.partition("\n")
    if not title.startswith("# "):
        return f"{links}\n\n{markdown}"
    return f"{title}\n\n{links}\n{newline}{rest}"


# A heading as nbconvert writes it (mkdocs-jupyter's lower-case id), with its own anchor link.
NB_HEADING = re.compile(r'(<h[1-6] id=")([^"]+)(">.*?<a class="anchor-link" href="#)\2(">)', re.DOTALL)


def _toc_ids(links) -> list[str]:
    """The ids of a table of contents' entries, in document order."""
    return [i for link in links for i in (link.id, *_toc_ids(link.children))]


def match_toc_ids(html: str, toc_ids: list[str]) -> str:
    """Give each repeated heading id the table of contents' id for it: the second "exercises" becomes "exercises_1".

    nbconvert gives every heading the id of its text, so the lesson's nine
    "Exercises" headings share one; the table of contents (Python-Markdown's)
    numbers the repeats, and so pointed eight of its entries nowhere. The
    n-th heading with an id takes the n-th table entry made from that id.
    """
    queues: dict[str, list[str]] = {}
    for toc_id in toc_ids:
        base = re.sub(r"_\d+$", "", toc_id)
        queues.setdefault(base if base in queues else toc_id, []).append(toc_id)

    def rename(match: re.Match) -> str:
        queue = queues.get(match.group(2))
        new_id = queue.pop(0) if queue else match.group(2)
        return f"{match.group(1)}{new_id}{match.group(3)}{new_id}{match.group(4)}"

    return NB_HEADING.sub(rename, html)


def on_page_content(html, page, config, files):
    # The notebook repeats the lesson pages: in the search index it would list every hit twice
    # and double the index each page downloads. (Runs before the search plugin reads the page.)
    if page.file.src_uri == NOTEBOOK:
        page.meta["search"] = {**(page.meta.get("search") or {}), "exclude": True}
    return html


def on_post_page(output, page, config):
    # nbconvert's template names CDN scripts; the page needs neither of them.
    if page.file.src_uri == NOTEBOOK:
        return match_toc_ids(NBCONVERT_CDN_SCRIPTS.sub("", output), _toc_ids(page.toc))
    return output
