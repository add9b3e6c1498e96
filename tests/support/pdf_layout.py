"""Reading a rendered document back: every text box inside the page margins, none over another.

The page is the one of ``billing_pipeline/invoicing/templates/_page.html.j2``: A4, margins 14 mm
(top, right, left) and 16 mm (bottom), the running footer in the bottom margin.
"""

from __future__ import annotations

import pdfplumber

MM = 72 / 25.4  # points per millimetre
TOP, RIGHT, BOTTOM, LEFT = 14 * MM, 14 * MM, 16 * MM, 14 * MM


def _overlaps(boxes, label, share: float, number: int) -> list[str]:
    """Pairs of boxes that overlap by more than ``share`` of the narrower one's width (and 0.5 pt
    in height); a sweep over x, so a page of thousands of glyphs is checked at once."""
    found = []
    boxes = sorted(boxes, key=lambda c: c["x0"])
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            if b["x0"] >= a["x1"]:
                break
            overlap_y = min(a["bottom"], b["bottom"]) - max(a["top"], b["top"])
            overlap_x = min(a["x1"], b["x1"]) - max(a["x0"], b["x0"])
            narrower = min(a["x1"] - a["x0"], b["x1"] - b["x0"])
            if overlap_y > 0.5 and overlap_x > max(0.5, share * narrower):
                found.append(f"page {number}: {label(a)!r} and {label(b)!r} overlap at ({b['x0']:.1f}, {b['top']:.1f})")
    return found


def layout_problems(path) -> tuple[int, list[str]]:
    """Pages, and every character outside the margins, every word overlapping another word, and
    every glyph overlapping another by more than 60 % of its width (kerned pairs such as "y." overlap
    a little inside a word; colliding texts overlap far more). The running footer sits in the
    bottom margin: it must stay inside the side margins and 5 mm clear of the paper's edge."""
    problems = []
    with pdfplumber.open(path) as pdf:
        for number, page in enumerate(pdf.pages, 1):
            chars = [c for c in page.chars if c["text"].strip()]
            assert chars, f"page {number} has no text"
            for c in chars:
                footer = c["top"] > page.height - BOTTOM
                inside = (
                    c["x0"] >= LEFT - 0.5
                    and c["x1"] <= page.width - RIGHT + 0.5
                    and c["top"] >= TOP - 0.5
                    and c["bottom"] <= page.height - (5 * MM if footer else BOTTOM - 0.5)
                )
                if not inside:
                    problems.append(f"page {number}: {c['text']!r} at ({c['x0']:.1f}, {c['top']:.1f}) crosses a margin")
            words = page.extract_words(x_tolerance=1.5, y_tolerance=2)
            problems += _overlaps(words, lambda w: w["text"], 0, number)
            problems += _overlaps(chars, lambda c: c["text"], 0.6, number)
        return len(pdf.pages), problems
