"""What a run reports: `terminal.py` (the summary table), `html.py` + `charts.py` (report.html, inline
SVG), `model_card.py` (README.md per published artifact), `numbers.py` (the one number formatter
every renderer uses).

May import `pipeline.core` only: renderers read the report (plain JSON-able rows), never a toolkit.
"""
