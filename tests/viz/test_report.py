"""The report renders from a real run folder and holds every figure, embedded."""

import re

import numpy as np

from convscope.debug.doctor import Check, DoctorReport
from convscope.viz import figures, write_report
from convscope.viz.report import FIGURES


def test_the_report_holds_every_figure_and_table(run_dir):
    DoctorReport("tiny job", [Check("initial loss (λ = 0)", True, "2.41", "ln C", "-")],
                 1.0, 0.01).save(run_dir / "doctor.json")
    path = write_report(run_dir, samples=200)
    text = path.read_text(encoding="utf-8")
    assert path == run_dir / "report.html"
    for name in FIGURES:
        section = re.search(f'<section id="{name}">(.*?)</section>', text)
        assert section and 'src="data:image/png;base64,' in section.group(1), name
    assert "initial loss (λ = 0)" in text and 'id="diagnosis"' in text
    assert "src=\"http" not in text and "<script" not in text  # self-contained
    assert len(re.findall("data:image/png;base64,", text)) == len(FIGURES)


def test_a_run_without_model_or_monitor_gets_notes_not_errors(tmp_path, run_dir):
    (tmp_path / "metrics.csv").write_text((run_dir / "metrics.csv").read_text())
    text = write_report(tmp_path).read_text(encoding="utf-8")
    assert text.count("data:image/png;base64,") == 2  # the curves and the activations
    assert "no monitor.jsonl" in text and "no trained model" in text


def test_keypoints_are_drawn_on_faces():
    rng = np.random.default_rng(0)
    faces = rng.random((3, 96, 96, 1))
    true = rng.random((3, 15, 2)) * 96
    fig = figures.keypoints(faces, true + 2, true)
    assert len(fig.axes) >= 3 and len(fig.axes[0].collections) == 2


def test_the_doctor_section_plots_the_range_test_it_ran(run_dir, tmp_path):
    """The recommended η alone hides whether the range test's curve was clean or spiky; the run's
    doctor.json keeps the curve and the report draws it with η* and the configured η."""
    from convscope.debug import run_doctor
    from convscope.debug.doctor import DOCTOR_FILE

    report = run_doctor(log=lambda *_: None, steps=30)
    assert len(report.lr_range["lr"]) == len(report.lr_range["loss"]) > 3
    assert report.configured_lr == 0.02
    saved = DoctorReport.load(report.save(tmp_path / DOCTOR_FILE))
    assert saved.lr_range == report.lr_range
    text = write_report(run_dir, doctor=saved, samples=100).read_text(encoding="utf-8")
    section = re.search('<section id="doctor">(.*?)</section>', text).group(1)
    assert 'src="data:image/png;base64,' in section
    fig = figures.lr_range(report.lr_range, report.recommended_lr, report.configured_lr)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "configured η = 0.02" in labels and any(s.startswith("recommended η*") for s in labels)


def test_each_layer_keeps_one_colour_on_every_trend_panel_and_the_legend_names_it(run_dir):
    """The weight panels hold only conv and fc layers, the others every layer: a colour cycle
    restarted per panel gave relu1 on one panel conv2's colour on another."""
    from convscope.debug.monitor import read_monitor

    records = read_monitor(run_dir)
    fig = figures.layer_trends(records)
    legend = {t.get_text(): h.get_color() for t, h in
              zip(fig.legends[0].get_texts(), fig.legends[0].legend_handles)}
    drawn = {layer for r in records if "t" in r for layer in [r["layer"]]}
    assert set(legend) == drawn and len(set(map(tuple, legend.values()))) == len(legend)
    for ax, (key, _, _) in zip(fig.axes, figures.TRENDS):
        layers = list(figures._by_layer(records, key))
        assert [tuple(line.get_color()) for line in ax.get_lines() if line.get_linestyle() == "-"] \
            == [tuple(legend[layer]) for layer in layers], key


def test_the_report_shows_a_bar_over_its_sections_when_asked(run_dir, capsys):
    write_report(run_dir, samples=50, progress=True)
    out = capsys.readouterr().out
    assert "report" in out and "10/10" in out
    write_report(run_dir, samples=50, progress=False)
    assert capsys.readouterr().out == ""
