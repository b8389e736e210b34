"""Draw the hypervolume curves of results.json as SVG, one file per table: mean hypervolume (± one standard
deviation, shaded) against trials and against training steps spent, one line per sampler.

    .venv/bin/python bench/search_efficiency/plot.py        # after compare.py; writes curves_<table>.svg

Plain SVG written here rather than a plotting library: the benchmark's only other output is JSON and Markdown,
and a figure GitHub renders inline in bench/README.md needs no more than polylines and polygons.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

HERE = Path(__file__).resolve().parent
COLOURS = {"random": "#7f7f7f", "tpe": "#1f77b4", "nsga2": "#2ca02c", "gp": "#d62728", "tpe+es": "#9467bd",
           "known-cost": "#ff7f0e", "known-cost+es": "#8c564b"}
WIDTH, HEIGHT, MARGIN, TOP = 420, 320, 52, 44


def _mean_std(columns: list[list[float]]) -> tuple[list[float], list[float]]:
    return ([statistics.mean(c) for c in columns],
            [statistics.pstdev(c) if len(c) > 1 else 0.0 for c in columns])


def _at_steps(by_steps: list[list[float]], budget: float) -> float:
    return max((v for s, v in by_steps if s <= budget), default=0.0)


def series(runs: list[dict], axis: str, steps_grid: list[float]) -> tuple[list[float], list[float], list[float]]:
    """(x, mean, std) of one sampler's seeds, against trials or against steps spent."""
    if axis == "trials":
        length = min(len(r["by_trials"]) for r in runs)
        mean, std = _mean_std([[r["by_trials"][i] for r in runs] for i in range(length)])
        return list(range(1, length + 1)), mean, std
    spent = min(r["by_steps"][-1][0] for r in runs)  # a curve ends where its shortest seed's budget did
    grid = [b for b in steps_grid if b <= spent]
    mean, std = _mean_std([[_at_steps(r["by_steps"], b) for r in runs] for b in grid])
    return grid, mean, std


def panel(by_label: dict[str, list[dict]], axis: str, left: float, best: float) -> list[str]:
    """One plot's SVG elements, placed ``left`` pixels from the figure's edge."""
    max_steps = max(r["by_steps"][-1][0] for runs in by_label.values() for r in runs)
    grid = [max_steps * i / 100 for i in range(1, 101)]
    drawn = {label: series(runs, axis, grid) for label, runs in by_label.items()}
    x_max = max(max(x) for x, _, _ in drawn.values())
    # The first few trials say little and would squash the rest: the axis starts at the lowest mean after 10%.
    y_low = min(m for x, mean, _ in drawn.values() for x, m in zip(x, mean) if x >= x_max / 10)
    y_high = best + 0.02 * (best - y_low)

    def xy(x: float, y: float) -> tuple[float, float]:
        px = left + MARGIN + (WIDTH - 1.4 * MARGIN) * x / x_max
        py = HEIGHT - MARGIN - (HEIGHT - MARGIN - TOP) * (min(max(y, y_low), y_high) - y_low) / (y_high - y_low)
        return px, py

    def at(x: float, y: float) -> str:
        return "{:.1f},{:.1f}".format(*xy(x, y))

    (x0, _), (x1, yb) = xy(0, y_low), xy(x_max, best)
    out = [f'<polyline points="{at(0, y_high)} {at(0, y_low)} {at(x_max, y_low)}" fill="none" stroke="black"/>',
           f'<line x1="{x0:.1f}" y1="{yb:.1f}" x2="{x1:.1f}" y2="{yb:.1f}" stroke="black" stroke-dasharray="4 3"/>',
           f'<text x="{left + MARGIN + (WIDTH - 1.4 * MARGIN) / 2:.0f}" y="{HEIGHT - 8}" text-anchor="middle">'
           f'{"trials" if axis == "trials" else "training steps spent"}</text>',
           f'<text x="{left + 12}" y="{(HEIGHT + TOP - MARGIN) / 2:.0f}" text-anchor="middle" '
           f'transform="rotate(-90 {left + 12} {(HEIGHT + TOP - MARGIN) / 2:.0f})">hypervolume</text>']
    for i in range(5):
        tx, ty = x_max * i / 4, y_low + (y_high - y_low) * i / 4
        px, py = xy(tx, y_low)
        out.append(f'<text x="{px:.1f}" y="{py + 16:.1f}" text-anchor="middle">{tx:,.0f}</text>')
        px, py = xy(0, ty)
        out.append(f'<text x="{px - 4:.1f}" y="{py + 4:.1f}" text-anchor="end">{ty:.3f}</text>')
    for label, (xs, mean, std) in drawn.items():
        colour = COLOURS.get(label, "#000000")
        band = [at(x, m + s) for x, m, s in zip(xs, mean, std)] + \
            [at(x, m - s) for x, m, s in reversed(list(zip(xs, mean, std)))]
        out.append(f'<polygon points="{" ".join(band)}" fill="{colour}" fill-opacity="0.12" stroke="none"/>')
        out.append(f'<polyline points="{" ".join(at(x, m) for x, m in zip(xs, mean))}" fill="none" '
                   f'stroke="{colour}" stroke-width="1.6"/>')
    return out


def figure(table: str, by_label: dict[str, list[dict]], best: float) -> str:
    elements = panel(by_label, "trials", 0, best) + panel(by_label, "steps", WIDTH, best)
    for i, label in enumerate(by_label):
        x = MARGIN + 10 + i * 110
        elements.append(f'<line x1="{x}" y1="30" x2="{x + 24}" y2="30" stroke="{COLOURS.get(label, "#000")}" '
                        f'stroke-width="3"/><text x="{x + 30}" y="34">{label}</text>')
    elements.append(f'<text x="{MARGIN + 10}" y="14">{table}: mean hypervolume over seeds, ± 1 std shaded; '
                    f'dashed: the whole table\'s front</text>')
    body = "\n".join(elements)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{2 * WIDTH}" height="{HEIGHT}" '
            f'font-family="sans-serif" font-size="12">\n<rect width="100%" height="100%" fill="white"/>\n'
            f"{body}\n</svg>\n")


def main() -> None:
    results = json.loads((HERE / "results.json").read_text())
    for table, by_label in results["runs"].items():
        best = results["summary"][table]["best_known"]
        (HERE / f"curves_{table}.svg").write_text(figure(table, by_label, best))
        print(f"curves_{table}.svg")


if __name__ == "__main__":
    main()
