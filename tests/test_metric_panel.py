"""`kind: metric` draws any logged metric per arm (mean over seeds, band min..max); it must name its metric."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from replicate.errors import UserError  # noqa: E402
from replicate.report.figures import PANELS  # noqa: E402
from replicate.specs import load_spec  # noqa: E402


def test_metric_panel_draws_mean_and_band_per_arm():
    rows = lambda scale: [{"step": s, "grad_norm": scale * (s + 1), "entropy": 1.0} for s in range(5)]  # noqa: E731
    runs = {"grpo": {0: rows(1.0), 1: rows(3.0)}, "kl_cov": {0: rows(10.0)}}
    fig, ax = plt.subplots()
    PANELS["metric"](ax, runs, {}, "", metric="grad_norm")
    lines = {line.get_label(): line for line in ax.lines}
    assert np.allclose(lines["grpo"].get_ydata(), [2.0 * (s + 1) for s in range(5)])
    assert np.allclose(lines["kl_cov"].get_ydata(), [10.0 * (s + 1) for s in range(5)])
    assert len(ax.collections) == 1  # a band where there are seeds to span (grpo), none for one seed
    assert ax.get_title() == "grad_norm over training"
    fig2, ax2 = plt.subplots()
    PANELS["metric"](ax2, runs, {}, "", metric="clipfrac")
    assert "no run logged 'clipfrac'" in ax2.texts[0].get_text() and "grad_norm" in ax2.texts[0].get_text()
    plt.close("all")


def test_metric_panel_names_its_metric(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text('id: s\nbase: fig1\npaper: p\nreproduces: "x"\npanels:\n  - {kind: curves}\n  - {kind: metric}\n')
    with pytest.raises(UserError, match=r"s.yaml:7: panels.1: .*names its `metric:`"):
        load_spec(path)
    path.write_text('id: s\nbase: fig1\npaper: p\nreproduces: "x"\npanels: [{kind: metric, metric: grad_norm}]\n')
    assert load_spec(path).panels[0].metric == "grad_norm"
