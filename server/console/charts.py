"""Charts for the console as inline SVG, drawn by the server (no script, no chart library, nothing fetched)."""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

PALETTE = ("#2f6db5", "#d9822b", "#1b7f3b", "#b00020", "#7a4fb5", "#5f6b7a", "#c2a100", "#0f8b8d")
WIDTH, HEIGHT, LEFT, BOTTOM, TOP = 420, 190, 34, 22, 10


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    step: float = 10 ** len(str(int(value))) / 10
    for factor in (1, 2, 2.5, 5, 10):
        if value <= step * factor:
            return step * factor
    return value


def bar_chart(
    title: str, labels: Sequence[str], series: Sequence[tuple[str, Sequence[float]]], unit: str = ""
) -> Markup:
    """Stacked bars, one per label (day); ``series`` = [(name, values per label)]; a legend when several."""
    count = len(labels)
    totals = [sum(values[i] for _name, values in series) for i in range(count)]
    top = _nice_max(max(totals, default=0))
    plot_w = WIDTH - LEFT - 8
    plot_h = HEIGHT - BOTTOM - TOP
    slot = plot_w / max(count, 1)
    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>'
    ]
    for frac in (0, 0.5, 1):
        y = TOP + plot_h * (1 - frac)
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - 8}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        value = top * frac
        text = f"{value:.0f}" if value >= 10 or value == int(value) else f"{value:.1f}"
        parts.append(f'<text x="{LEFT - 4}" y="{y + 4:.1f}" text-anchor="end" class="axis">{text}</text>')
    for i, label in enumerate(labels):
        x = LEFT + i * slot + slot * 0.15
        base = float(TOP + plot_h)
        for n, (name, values) in enumerate(series):
            value = values[i]
            if value <= 0:
                continue
            h = plot_h * value / top
            base -= h
            shown = f"{value:.0f}" if value == int(value) else f"{value:.1f}"
            parts.append(
                f'<rect x="{x:.1f}" y="{base:.1f}" width="{slot * 0.7:.1f}" height="{h:.1f}" '
                f'fill="{PALETTE[n % len(PALETTE)]}"><title>{escape(label)} {escape(name)}: {shown}{escape(unit)}'
                "</title></rect>"
            )
        if i % 2 == (count - 1) % 2:  # every other day, ending on today
            parts.append(
                f'<text x="{LEFT + i * slot + slot / 2:.1f}" y="{HEIGHT - 8}" text-anchor="middle" class="axis">'
                f"{escape(label)}</text>"
            )
    parts.append("</svg>")
    svg = "".join(parts)
    if len(series) > 1:
        legend = "".join(
            f'<span class="key"><span class="swatch" style="background:{PALETTE[n % len(PALETTE)]}"></span>'
            f"{escape(name)}</span>"
            for n, (name, _values) in enumerate(series)
        )
        svg += f'<div class="legend">{legend}</div>'
    return Markup(svg)  # noqa: S704 - every text in it went through escape()
