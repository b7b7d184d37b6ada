"""The HTML report (`snakemake --report`) of the shared small run, opened in a real browser (headless Chromium):
the app renders without JavaScript errors, a reader can click through to every figure and it decodes, and the
tables are there (their links carry the table itself). Skips where Chromium is not installed (Debian's `chromium`
package; `.ci/run` installs it).

`CRYPTOMED_REPORT_SCREENSHOT=docs/report.png pytest tests/test_report_browser.py` also saves the screenshot of a
figure view that docs/ shows.
"""

import os
import shutil
from pathlib import Path

import pytest

from browser import CHROMIUM, with_page

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (Debian's `chromium`; .ci/run installs it)")]

# category -> (one subcategory per dataset?, figures); rows are labelled with the file's path
FIGURES = {"Results": (True, ("training_curves.png", "confusion_matrices.png", "roc_curves.png", "timing.png")),
           "Comparison": (False, ("comparison.png",))}
TABLES = {("Comparison", "chest_xray/comparison.md"): "McNemar", ("Comparison", "brain_mri/comparison.md"): "McNemar",
          ("Security analysis", "security/summary.md"): "NPCR"}

ROW_LINK = """(name => {{
  const row = [...document.querySelectorAll('tr')].find(r => r.cells.length && (t => t === name || t.endsWith('/' + name))(r.cells[0].innerText.trim()));
  if (!row) return null;
  const a = row.cells[row.cells.length - 1].querySelector('a');
  return a ? {{href: a.getAttribute('href'), download: a.getAttribute('download')}} : 'no link';
}})({name})"""

CLICK_VIEW = """(name => {{
  const row = [...document.querySelectorAll('tr')].find(r => r.cells.length && (t => t === name || t.endsWith('/' + name))(r.cells[0].innerText.trim()));
  if (!row) return false;
  row.cells[row.cells.length - 1].querySelector('a').click();
  return true;
}})({name})"""

SHOWN_IMAGE = """(name => {{
  const img = [...document.querySelectorAll('img')].find(i => {{
    const src = i.getAttribute('src') || '';
    return src.startsWith('data:image/png') && src.split('base64,')[0].includes(name);
  }});
  return img && img.complete && img.naturalWidth > 100 ? [img.naturalWidth, img.naturalHeight] : null;
}})({name})"""

DECODED = "(href => atob(href.split('base64,')[1]))({href})"


def test_report_renders_with_figures_and_tables_in_chromium(report, tmp_path):
    import json

    datasets = ("chest_xray", "brain_mri")
    shot = tmp_path / "report.png"

    url = report.as_uri()
    menu = "document.body.innerText.includes('Workflow') && document.body.innerText"

    async def read(page):
        seen = {"menu": await page.wait_for(menu)}
        figures, tables = {}, {}
        for category, (per_dataset, names) in FIGURES.items():
            for ds in datasets:
                await page.goto(url)  # back to the menu
                await page.wait_for(menu)
                await page.click_text(category)
                if per_dataset:
                    await page.click_text(ds)
                for name in names:
                    label = name if per_dataset else f"{ds}/{name}"
                    await page.wait_for(CLICK_VIEW.format(name=json.dumps(label)))
                    figures[(category, ds, name)] = await page.wait_for(SHOWN_IMAGE.format(name=json.dumps(name)))
                    if (category, ds, name) == ("Comparison", "chest_xray", "comparison.png"):
                        await page.screenshot(shot)
        for (category, label), word in TABLES.items():
            await page.goto(url)
            await page.wait_for(menu)
            await page.click_text(category)
            link = await page.wait_for(ROW_LINK.format(name=json.dumps(label)))
            assert isinstance(link, dict) and link["href"].startswith("data:"), link
            tables[label] = word in await page.js(DECODED.format(href=json.dumps(link["href"])))
        await page.goto(url)
        await page.wait_for(menu)
        await page.click_text("Statistics")
        seen["stats"] = await page.wait_for("[...document.querySelectorAll('canvas')].filter(c => c.width > 100)"
                                            ".length")  # the runtime charts (Vega)
        return seen, figures, tables, page.errors

    seen, figures, tables, errors = with_page(report.as_uri(), tmp_path / "profile", read)
    assert errors == []
    for category in (*FIGURES, *(c for c, _ in TABLES)):
        assert category in seen["menu"], category
    assert all(size and size[0] > 100 for size in figures.values()), figures
    assert len(figures) == 2 * sum(len(names) for _, names in FIGURES.values())
    assert all(tables.values()) and len(tables) == 3, tables
    assert seen["stats"] >= 2
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    if os.environ.get("CRYPTOMED_REPORT_SCREENSHOT"):
        shutil.copy(shot, Path(os.environ["CRYPTOMED_REPORT_SCREENSHOT"]))
