"""The update-ratio warning judges a small ratio at the schedule's starting learning rate."""

from convscope.debug.rules import Thresholds, update_warnings


def test_a_small_update_ratio_at_an_annealed_learning_rate_is_not_a_warning():
    row = {"layer": "fc3", "update_ratio": 5e-6}
    assert update_warnings(row, Thresholds()) != []                    # at η_0: raise it
    assert update_warnings(row, Thresholds(), lr_fraction=0.02) == []  # η annealed to 2 % of η_0
    assert "lower" in update_warnings({"layer": "fc3", "update_ratio": 1.0}, Thresholds(),
                                      lr_fraction=0.02)[0]["message"]
