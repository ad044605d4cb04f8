"""Label segments have one home (wattprof.analysis.segments): a label's span is its runs of
consecutive steps, gaps between them included."""

from __future__ import annotations

import pandas as pd

from wattprof.analysis.segments import label_segments


def _steps(rows: list[tuple[float, float, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["t_start", "t_end", "label"])


def test_consecutive_steps_of_a_label_form_one_segment_with_the_gaps_between_them():
    segs = label_segments(_steps([(0, 1, "train"), (1.5, 2, "train"), (3, 4, "eval"), (5, 6, "train")]))
    assert segs["label"].tolist() == ["train", "eval", "train"]
    assert segs["t_start"].tolist() == [0, 3, 5]
    assert segs["t_end"].tolist() == [2, 4, 6]
    assert segs["steps"].tolist() == [2, 1, 1]


def test_steps_are_taken_in_time_order_and_a_segment_ends_at_its_latest_end():
    # written out of order; an overlapping step that ends after the next one starts
    segs = label_segments(_steps([(4, 5, "eval"), (0, 3.5, "train"), (1, 2, "train"), (3.2, 3.4, "eval")]))
    assert segs["label"].tolist() == ["train", "eval"]
    assert segs["t_end"].tolist() == [3.5, 5]
    assert segs["steps"].tolist() == [2, 2]


def test_no_steps_no_segments():
    segs = label_segments(_steps([]))
    assert list(segs.columns) == ["label", "t_start", "t_end", "steps"] and len(segs) == 0
    assert segs["t_start"].dtype == "float64"
