"""The print page's code-line links: each points at its own line again.

pymdownx.highlight's `anchor_linenums` gives every line of a code block an
anchor, `<a id="__codelineno-B-L" name="__codelineno-B-L" href="#__codelineno-B-L">`,
numbered per page, so every page has its own `__codelineno-0-1`.
mkdocs-print-site-plugin joins the pages into one (print_page/) and prefixes
each page's `#` links with the page's key (`#mnist-__codelineno-0-1`), but it
renames only the ids of headings, list items and footnotes: the line anchors
kept their old ids, so every line link pointed nowhere and the same ids
repeated from page to page. This hook runs after the plugin has written the
print page and gives each line anchor the id its own link names.
"""

import re
from pathlib import Path

from mkdocs.plugins import event_priority

from cnnlesson.files import write_text_atomic

# The plugin's print page: print_page/index.html with directory URLs, print_page.html without (offline builds).
PRINT_PAGES = ("print_page/index.html", "print_page.html")
LINE_ANCHOR = re.compile(r'<a id="(__codelineno-[\d-]+)" name="\1" href="#([\w.-]+-\1)">')


def fix_line_anchors(html: str) -> str:
    """Give each code-line anchor whose link the plugin prefixed the id and name of that link."""
    return LINE_ANCHOR.sub(lambda m: f'<a id="{m.group(2)}" name="{m.group(2)}" href="#{m.group(2)}">', html)


@event_priority(-100)  # after mkdocs-print-site-plugin's on_post_build has written the page
def on_post_build(config):
    for name in PRINT_PAGES:
        path = Path(config.site_dir) / name
        if path.is_file():
            html = path.read_text(encoding="utf-8")
            fixed = fix_line_anchors(html)
            if fixed != html:
                write_text_atomic(path, fixed)
