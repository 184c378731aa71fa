"""Pages as a person reads them: HTML parsed into its elements, links, text and table rows.

Used on the status pages rendered in-process and on the DOM a real browser dumped.
"""

from __future__ import annotations

from html.parser import HTMLParser

#: Elements whose text is not shown on the page.
_HIDDEN = frozenset({"head", "title", "style", "script"})


class Page(HTMLParser):
    """A page as a browser shows it: its elements and attributes, links, visible text, and
    every table's rows as the text of their cells."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.attributes: list[tuple[str, str | None]] = []
        self.links: list[str] = []
        self.tables: list[list[list[str]]] = []
        self._cell: list[str] | None = None
        self._hidden = 0
        self._text: list[str] = []
        self.feed(text)
        self.close()

    @property
    def text(self) -> str:
        """Everything the page shows, as one string."""
        return "".join(self._text)

    @property
    def rows(self) -> list[list[str]]:
        """The rows of every table, in order."""
        return [row for table in self.tables for row in table]

    def table(self, index: int = 0) -> list[dict[str, str]]:
        """A table's body rows, keyed by the heading of their column (without the sort mark)."""
        heading, *rows = self.tables[index]
        keys = [cell.rstrip(" ▲▼") for cell in heading]
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.attributes += attrs
        if tag in _HIDDEN:
            self._hidden += 1
        elif tag == "a":
            self.links += [value for name, value in attrs if name == "href" and value]
        elif tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN:
            self._hidden = max(0, self._hidden - 1)
        elif tag in ("td", "th") and self._cell is not None and self.tables and self.tables[-1]:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._hidden:
            return
        self._text.append(data)
        if self._cell is not None:
            self._cell.append(data)
