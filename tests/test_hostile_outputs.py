"""Output encoding (issue 18): every string a user supplies is escaped for each medium it reaches.

Unit checks of the one helper per medium (pipeline/reports/escape.py), then one whole run of the tiny
Xception whose labels, model file, data folder and output folder are hostile (HTML, Markdown, YAML
document markers, rich markup, ANSI and OSC escapes), with every output inspected.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console
from typer.testing import CliRunner

from edgepipe.cli.app import app
from edgepipe.reports import escape
from edgepipe.reports.model_card import read_front_matter
from tests.fixtures import tiny_xception
from tests.fixtures.configs import INPUT

ESC = "\x1b"
LABELS = ["<script>alert('x')</script>", ESC + "[31mred" + ESC + "[0m [bold]b[/bold] `t` *em* | # h", "---"]
NAMES = {"model": "m [red]" + ESC + "]8;;evil" + "\x07<b>.keras", "data": "data <img src=x> [blue]",
         "out": "out <i> {x} " + ESC + "\x07 \u202e|"}  # no glob characters: refused (TensorFlow globs paths)
hostile_text = st.text(st.sampled_from(list("ab <>&\"'`*_[]#|~-.\n\r\t") + [ESC, "\x07", "\u202e", "\x85", "\x00"]),
                       max_size=30)


@settings(max_examples=40, deadline=2000, derandomize=True, database=None)
@given(value=hostile_text)
def test_each_medium_helper_neutralises_hostile_text(value):
    h = escape.html(value)
    assert not any(c in h for c in "<>\"'\x00\x1b")
    md = escape.markdown(value)
    assert "\n" not in md and "<" not in md and ESC not in md and "\u202e" not in md
    code = escape.markdown_code(value)
    fence = code[:len(code) - len(code.lstrip("`"))]
    assert code.endswith(fence) and fence not in code[len(fence):-len(fence)]  # the span cannot be closed early
    t = escape.terminal(value)
    assert not any(c in t for c in (ESC, "\x07", "\x00", "\r", "\u202e", "\x85"))
    console = Console(record=True, width=400, force_terminal=False)
    console.print(t, end="")  # markup never interpreted: what is shown is the text itself (tabs aside: expanded)
    assert console.export_text() == escape.terminal(value, markup=False) or "\t" in value


@settings(max_examples=40, deadline=2000, derandomize=True, database=None)
@given(data=st.dictionaries(hostile_text, st.one_of(hostile_text, st.lists(hostile_text, max_size=3)), max_size=4))
def test_front_matter_round_trips_and_never_closes_early(data):
    text = escape.front_matter({"name": "card", "values": data})
    assert not any(line.rstrip() in ("---", "...") for line in text.splitlines())
    assert yaml.safe_load(text) == {"name": "card", "values": data}


def test_json_text_escapes_control_characters():
    text = escape.json_text({"label": LABELS[1] + "\x00"})
    assert ESC not in text and "\x00" not in text and json.loads(text)["label"] == LABELS[1] + "\x00"


@pytest.fixture(scope="module")
def hostile_run(tiny_assets, tmp_path_factory):
    d = tmp_path_factory.mktemp("hostile")
    model = d / NAMES["model"]
    shutil.copyfile(tiny_assets["model"], model)
    data = d / NAMES["data"]
    shutil.copytree(tiny_assets["data"], data)
    with open(data / "labels.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["path", "label"])
        for i, cls in enumerate(tiny_xception.CLASSES):
            for p in sorted((data / cls).iterdir()):
                w.writerow([f"{cls}/{p.name}", LABELS[i]])
    out = d / NAMES["out"]
    cfg = {
        "model": {"path": str(model)},
        "input": {"size": [INPUT, INPUT], "channels": 3, "preprocessing": "xception"},
        "data": {"labels": LABELS, "splits": {"seed": 0, "calibration": 30, "test_fraction": 0.3},
                 "calibration": {"source": str(data / "labels.csv"), "split": "calibration"},
                 "validation": {"source": str(data / "labels.csv"), "split": "test"}, "min_calibration": 20},
        "targets": [{"name": "tflite-arm", "options": {"precisions": ["fp32"]}}],
        "gates": {"max_top1_drop": 50.0},
        "latency": {"warmup": 0, "runs": 50, "end_to_end": False},
        "diagnostics": {"per_layer_images": 0},
        "output": str(out),
    }
    (d / "p.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    res = CliRunner().invoke(app, ["run", str(d / "p.yaml")])
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    assert res.exit_code == 0, res.output
    return {"out": out, "terminal": res.output}


def test_a_whole_run_with_hostile_names_escapes_every_output(hostile_run):
    out = hostile_run["out"]
    report = json.loads((out / "report.json").read_text())
    assert report["labels"] == LABELS  # JSON: escaped by the encoder, exact after decoding
    page = (out / "report.html").read_text()
    assert "<script>alert" not in page and "<img src=x>" not in page and ESC not in page and "\x07" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    art = Path(next(r["dir"] for r in report["artifacts"] if r.get("dir")))
    assert (art / "labels.txt").read_text().splitlines() == LABELS
    card = (art / "README.md").read_text()
    front = read_front_matter(art / "README.md")  # the '---' label does not end the front matter
    assert front["dataset"]["validation"]["labels"] == LABELS
    assert list(front["metrics"]["per_class_accuracy"]) == LABELS
    body = card[card.index("\n---\n", 4) + 5:]
    assert "<script>" not in body and "<img" not in body and ESC not in card and "\x07" not in card
    assert "&lt;script&gt;" in body and "\\[bold\\]b\\[/bold\\]" in body and "\n---\n" not in body
    shown = hostile_run["terminal"]
    assert ESC not in shown and "\x07" not in shown and "\u202e" not in shown
    assert "out <i> {x} \\x1b\\x07 |/report.json" in " ".join(shown.split())  # controls shown as text


def test_an_output_path_tensorflow_would_glob_is_refused(tmp_path):
    from edgepipe.core.errors import InputError
    from edgepipe.engine.outdir import check_output_dir

    with pytest.raises(InputError, match=r"expected a path without the characters \* \? \[ \] .*Received: a path "
                                         r"with \[ \]"):
        check_output_dir(tmp_path / "out [red]", {})
