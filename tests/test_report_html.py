"""`report` writes a static results/index.html: a scoreboard row per spec x scale whose counts are the claims.json
verdicts, every figure inline with a file behind it, links that resolve; and it renders in a real headless browser
(skipped where none is installed). `list` is sorted by paper and figure number."""
import json
import os
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


class Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tables, self.imgs, self.links, self.ids, self._row, self._cell = [], [], [], set(), None, None

    rows = property(lambda self: self.tables[0])  # the first table: the scoreboard

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = ""
        elif tag == "img":
            self.imgs.append(a["src"])
        elif tag == "a":
            self.links.append(a["href"])

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._row is not None and self._cell is not None:
            self._row.append(self._cell.strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.tables[-1].append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    res = subprocess.run([sys.executable, "-m", "replicate", "report"], cwd=home, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO), "REPLICATE_HOME": str(home)}, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "index.html" in res.stdout
    return home / "results" / "index.html"


def test_index_scoreboard_counts_figures_and_links(index):
    page = Page()
    page.feed(index.read_text())
    head, *rows = page.rows  # the first table: the scoreboard
    assert head[:8] == ["paper", "spec", "scale", "replicated", "not replicated", "inconclusive", "claims", "result"]
    by = {(r[1], r[2]): r for r in rows}
    fig1 = json.loads((REPO / "figures" / "fig1" / "claims.json").read_text())
    counts = [sum(c["verdict"] == v for c in fig1["claims"]) for v in ("replicated", "not replicated", "inconclusive")]
    assert [int(x) for x in by[("fig1", "tiny")][3:6]] == counts and int(by[("fig1", "tiny")][6]) == len(fig1["claims"])
    assert ("fig1", "small") in by  # a spec's other scale with a result has its own row
    ids = [r[1] for r in rows]
    assert ids.index("fig2") < ids.index("fig10") < ids.index("table1")  # figure number order, not string order
    assert all(f"#{i}" in page.links and i in page.ids for i in set(ids))
    assert len(page.imgs) >= 15
    for link in page.imgs + [l for l in page.links if not l.startswith("#")]:
        assert (index.parent / link).exists(), link
    text = index.read_text()
    assert "made by other code</b>: the result's code fingerprint" in text and "id='other-code'" in text


def test_index_claims_cells_are_claims_md_cells(index):
    """The page the README opens first reads each claim as claims.md does: a claim over every run by its worst run
    ("worst 0.424", threshold "... in every run"), not by a mean it is not judged on, and the verdict after Holm."""
    from replicate.report.claims import measured_cell, threshold_cell
    page = Page()
    page.feed(index.read_text())
    head, *rows = [row for table in page.tables[1:] for row in table]  # each spec x scale's claims table
    assert head[2].startswith("measured") and head[-2:] == ["verdict", "after Holm"]
    fig1 = json.loads((REPO / "figures" / "fig1" / "claims.json").read_text())["claims"]
    md = (REPO / "figures" / "fig1" / "claims.md").read_text()
    every = [c for c in fig1 if c["over"] == "every"]
    assert every, "fig1's reference has a claim over every run"
    for c in fig1:
        row = next(r for r in rows if r[0].startswith(c["id"] + ":") or r[0].startswith(c["id"] + " ("))
        assert [row[2], row[4], row[6], row[7]] == [measured_cell(c), threshold_cell(c), c["verdict"], c["verdict_holm"]]
        assert f"| {measured_cell(c)} (" in md and threshold_cell(c) in md  # the same cells in claims.md
    assert all(measured_cell(c).startswith("worst ") for c in every)


def test_list_is_sorted_by_paper_and_figure_number():
    res = subprocess.run([sys.executable, "-m", "replicate", "list"], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO)
    ids = [line.split()[0] for line in res.stdout.splitlines() if line and not line.startswith(" ")]
    figs = [i for i in ids if i.startswith("fig")]
    assert figs == sorted(figs, key=lambda i: int(i[3:])) and ids.index("fig12") < ids.index("table1")


@pytest.mark.skipif(not (shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")),
                    reason="no headless browser installed")
def test_index_renders_in_a_headless_browser(index, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1280,1600"]
    dom = subprocess.run([*flags, "--dump-dom", index.as_uri()], capture_output=True, text=True, timeout=120).stdout
    assert "<h1>replicate: results</h1>" in dom and dom.count("<tr>") > 40
    shot = tmp_path / "shot.png"
    subprocess.run([*flags, f"--screenshot={shot}", index.as_uri()], capture_output=True, timeout=120)
    from PIL import Image
    img = Image.open(shot).convert("L")
    assert img.size == (1280, 1600)
    colors = img.getcolors(maxcolors=1 << 16)
    assert colors is None or len(colors) > 50  # text, tables and figures drawn, not a blank page
