"""What a run reports: `rows.py` (ReportRow, the typed, frozen report row and its JSON form),
`terminal.py` (the summary table), `html.py` + `charts.py` (report.html, inline SVG), `model_card.py`
(README.md per published artifact), `numbers.py` (the one number formatter every renderer uses).

May import `pipeline.core` only: renderers read the report (rows as ReportRow or plain JSON), never a toolkit.
"""
