"""The labels benchmark runs end to end and its figures show that no label went astray."""

from __future__ import annotations

from ad_core.bench import labels


def test_labels_bench_loses_nothing_and_writes_its_report(tmp_path):
    out = tmp_path / "labels.md"
    assert labels.main(["--out", str(out)]) == 0
    text = out.read_text()
    assert "Command: `python -m ad_core.bench labels`" in text
    assert "800 of 800 labels stored" in text
    assert "600 of 600 labels identical" in text
    assert "0 labels shown on row numbers, 600 hidden; set back: 600 of 600" in text
    assert "after all of Bob's, 0 labels left" in text
    assert "a file with one unknown key: 0 entries written" in text
