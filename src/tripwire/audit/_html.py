"""Self-contained HTML: inline CSS and SVG plots, no scripts or CDN, works offline."""

from __future__ import annotations

import html
import io
from collections.abc import Sequence
from typing import Any

_CSS = " ".join(
    [
        "body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1100px;",
        "color:#1d2330;line-height:1.45;padding:0 1rem}",
        "h1{font-size:1.7rem;margin-bottom:.2rem}",
        "h2{border-bottom:2px solid #e3e6ee;padding-bottom:.3rem;margin-top:2.2rem}",
        "table{border-collapse:collapse;margin:.8rem 0;font-size:.9rem}",
        "th,td{border:1px solid #d7dbe5;padding:.3rem .6rem;text-align:left}",
        "th{background:#f3f5f9}td.num{text-align:right;font-variant-numeric:tabular-nums}",
        ".pass{color:#126b2f;font-weight:600}.fail{color:#a11;font-weight:600}.muted{color:#667}",
        ".summary{background:#f7f8fb;border-left:4px solid #4a6fd1;",
        "padding:.6rem 1rem;margin:.8rem 0}",
        "pre{background:#f7f8fb;padding:.6rem;white-space:pre-wrap;font-size:.85rem}",
        ".tok{padding:0 1px;border-radius:2px}.plot svg{max-width:100%;height:auto}",
    ]
)


def esc(value: Any) -> str:
    return html.escape(str(value))


def fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return "—"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return esc(x)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for cell in row:
            if isinstance(cell, Raw):
                cells.append(f"<td>{cell.html}</td>")
            elif isinstance(cell, int | float) and not isinstance(cell, bool):
                cells.append(f'<td class="num">{fmt(cell)}</td>')
            else:
                cells.append(f"<td>{esc(cell)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


class Raw:
    """Pre-rendered HTML for a table cell."""

    def __init__(self, html_text: str) -> None:
        self.html = html_text


def figure(width: float, height: float) -> tuple[Any, Any]:
    """A new matplotlib figure and axes on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height))


def svg(fig: Any) -> str:
    """A matplotlib figure as an inline SVG string (the figure is closed)."""
    import matplotlib.pyplot as plt

    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buf.getvalue()
    return '<div class="plot">' + text[text.find("<svg") :] + "</div>"


def token_heat(tokens: Sequence[str], scores: Sequence[float], scale: float = 3.0) -> str:
    """Tokens shaded by score (z units): red above 0, blue below."""
    spans = []
    for tok, s in zip(tokens, scores, strict=True):
        a = max(-1.0, min(1.0, s / scale))
        color = f"rgba(214,39,40,{a:.2f})" if a > 0 else f"rgba(31,119,180,{-a:.2f})"
        spans.append(
            f'<span class="tok" style="background:{color}" title="{s:.2f}">{esc(tok)}</span>'
        )
    return "<pre>" + "".join(spans) + "</pre>"


def page(title: str, header_html: str, sections: Sequence[tuple[str, str, str]]) -> str:
    """The whole report: ``sections`` are ``(anchor, title, html)``."""
    nav = " · ".join(f'<a href="#{esc(a)}">{esc(t)}</a>' for a, t, _ in sections)
    body = "".join(f'<section id="{esc(a)}"><h2>{esc(t)}</h2>{h}</section>' for a, t, h in sections)
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width,initial-scale=1'>"
        f"<title>{esc(title)}</title>"
        f"<style>{_CSS}</style></head><body><h1>{esc(title)}</h1>{header_html}<p>{nav}</p>{body}"
        "</body></html>\n"
    )


__all__ = ["Raw", "esc", "figure", "fmt", "page", "svg", "table", "token_heat"]
