"""What a run reports: `rows.py` (ReportRow, the typed, frozen report row and its JSON form, and the
busy-machine note), `terminal.py` (the summary table), `html.py` + `templates/report.html.j2` +
`charts.py` / `charts_dist.py` (report.html, inline SVG), `model_card.py` + `templates/model_card.md.j2`
+ `run_snippets.py` (README.md per published artifact, Hugging Face format), `tracking.py` (`--mlflow`),
`numbers.py` (the one number formatter every renderer uses), `escape.py` (one escaping helper per output
medium, for every user string).

May import `edgepipe.core` only: renderers read the report (rows as ReportRow or plain JSON), never a
toolkit (jinja2 and yaml are plain libraries; mlflow is imported lazily by `tracking.py` alone).
"""
