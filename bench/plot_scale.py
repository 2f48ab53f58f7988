"""bench/plot_scale.py - draws bench/scale.sh's TSV as an SVG: each figure
(restart-to-ready ms, RSS MB, queue page ms, SQLite bytes per job) against
the number of jobs in history, log x axis, one small panel per figure, each
with its target line where the issue set one. No plotting library: a few
lines of SVG text.

  python3 bench/plot_scale.py scale.tsv out.svg
"""
import math
import sys

PANELS = [  # column, title, unit, target
    ("ready_ms", "restart -> first page answered", "ms", 2000),
    ("rss_mb", "RSS of kiln serve (+1,000 queued)", "MB", 64),
    ("page_ms", "GET queue page (100 jobs), wall", "ms", 20),
    ("bytes_per_job", "SQLite bytes per job", "B", None),
]


def main():
    rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
    head, data = rows[0], rows[1:]
    col = {h: i for i, h in enumerate(head)}
    xs = [float(r[col["jobs"]]) for r in data]
    PW, PH, M = 200, 190, 45
    W, H = 40 + len(PANELS) * (PW + M + 5), 300
    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
           'font-family="sans-serif" font-size="11">' % (W, H),
           '<rect width="100%" height="100%" fill="white"/>',
           '<text x="10" y="18" font-size="13">kiln serve as history grows '
           '(bench/scale.sh; shared 2-core VM, see docs/BENCHMARKS.md for load)</text>']
    lx0, lx1 = math.log10(min(xs)), math.log10(max(xs))
    for p, (c, title, unit, target) in enumerate(PANELS):
        ox, oy = 20 + p * (PW + M + 5) + M, 50
        ys = [float(r[col[c]]) for r in data]
        top = max(ys + ([target] if target else [])) * 1.15 or 1
        def px(x):
            return ox + (math.log10(x) - lx0) / ((lx1 - lx0) or 1) * PW
        def py(y):
            return oy + PH - y / top * PH
        out.append('<text x="%d" y="%d">%s</text>' % (ox - 30, oy - 8, title))
        out.append('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>' % (ox, oy + PH, ox + PW, oy + PH))
        out.append('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>' % (ox, oy, ox, oy + PH))
        for x in xs:
            out.append('<text x="%.1f" y="%d" text-anchor="middle">%s</text>' % (
                px(x), oy + PH + 14, "%dk" % (x / 1000) if x < 1e6 else "%gM" % (x / 1e6)))
        for frac in (0, 0.5, 1):
            out.append('<text x="%d" y="%.1f" text-anchor="end">%.0f %s</text>' % (
                ox - 4, py(top * frac / 1.15) + 4, top * frac / 1.15, unit))
        if target:
            out.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#c33" stroke-dasharray="4 3"/>'
                       '<text x="%d" y="%.1f" fill="#c33" text-anchor="end">target %g %s</text>' % (
                           ox, py(target), ox + PW, py(target), ox + PW, py(target) - 3, target, unit))
        pts = " ".join("%.1f,%.1f" % (px(x), py(y)) for x, y in zip(xs, ys))
        out.append('<polyline points="%s" fill="none" stroke="#2a6" stroke-width="2"/>' % pts)
        for x, y in zip(xs, ys):
            out.append('<circle cx="%.1f" cy="%.1f" r="3" fill="#2a6"/>'
                       '<text x="%.1f" y="%.1f" text-anchor="middle">%g</text>' % (
                           px(x), py(y), px(x), py(y) - 6, y))
        out.append('<text x="%d" y="%d" text-anchor="middle">jobs in history</text>' % (
            ox + PW / 2, oy + PH + 30))
    out.append("</svg>")
    open(sys.argv[2], "w").write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
