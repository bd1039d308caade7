"""RefinePlan against the schedule written out by hand from the paper and the authors' code."""

import pytest

from keras_rollback import RefinePlan

BLOCKS = ("stem", "conv2_x", "conv3_x", "conv4_x", "conv5_x")


def _rates(stem, conv2, conv3, conv4, conv5, head):
    return dict(zip((*BLOCKS, "head"), (stem, conv2, conv3, conv4, conv5, head)))


def test_paper_default_schedule_for_160_epochs():
    periods = RefinePlan().resolve(BLOCKS, epochs=160)
    assert [(p.number, p.start_epoch, p.epochs) for p in periods] == [
        (1, 0, 40),
        (2, 40, 40),
        (3, 80, 40),
        (4, 120, 40),
    ]
    assert [p.rolled_back for p in periods] == [
        (),
        ("conv2_x", "conv3_x", "conv4_x", "conv5_x"),
        ("conv3_x", "conv4_x", "conv5_x"),
        ("conv4_x", "conv5_x"),
    ]
    expected = {
        0: _rates(0.01, 0.01, 0.01, 0.01, 0.01, 0.1),
        19: _rates(0.01, 0.01, 0.01, 0.01, 0.01, 0.1),
        20: _rates(0.001, 0.001, 0.001, 0.001, 0.001, 0.01),
        40: _rates(0.001, 0.01, 0.01, 0.01, 0.01, 0.01),
        60: _rates(0.0001, 0.001, 0.001, 0.001, 0.001, 0.001),
        80: _rates(0.001, 0.001, 0.01, 0.01, 0.01, 0.01),
        120: _rates(0.001, 0.001, 0.001, 0.01, 0.01, 0.01),
        159: _rates(0.0001, 0.0001, 0.0001, 0.001, 0.001, 0.001),
    }
    by_epoch = {e: p for p in periods for e in range(p.start_epoch, p.end_epoch)}
    for epoch, rates in expected.items():
        assert by_epoch[epoch].learning_rates(epoch) == pytest.approx(rates), epoch


def test_table_1_keeps_one_block_and_rolls_back_the_rest():
    periods = RefinePlan(kept_blocks=[["conv3_x"]]).resolve(BLOCKS)
    assert len(periods) == 2
    assert periods[1].rolled_back == ("stem", "conv2_x", "conv4_x", "conv5_x")
    assert periods[1].learning_rates(40)["conv3_x"] == 0.001


def test_base_cy_and_fc_warmup():
    base_cy = RefinePlan(rollback=False).resolve(BLOCKS, epochs=160)
    assert all(p.rolled_back == () for p in base_cy)
    assert base_cy[1].learning_rates(40) == RefinePlan().resolve(BLOCKS, epochs=160)[
        1
    ].learning_rates(40)
    warmup, fine_tune = RefinePlan(periods=1, warmup_epochs=20).resolve(BLOCKS, epochs=60)
    assert (warmup.number, warmup.epochs, fine_tune.start_epoch) == (0, 20, 20)
    assert warmup.learning_rates(0) == _rates(0, 0, 0, 0, 0, 0.1)
    assert fine_tune.learning_rates(20) == _rates(0.01, 0.01, 0.01, 0.01, 0.01, 0.1)


def test_periods_are_derived_from_epochs():
    assert RefinePlan(period_epochs=10).num_periods(epochs=30) == 3
    assert RefinePlan(period_epochs=10, warmup_epochs=5).num_periods(epochs=25) == 2
    assert RefinePlan(period_epochs=10).total_epochs(epochs=30) == 30
    assert RefinePlan(kept_blocks=[["stem"], ["stem", "conv2_x"]]).periods == 3


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"period_epochs": 0}, "period_epochs=0"),
        ({"period_epochs": 2.5}, "period_epochs=2.5"),
        ({"periods": 0}, "periods=0"),
        ({"warmup_epochs": -1}, "warmup_epochs=-1"),
        ({"learning_rate": 0.0}, "learning_rate=0.0"),
        ({"head_learning_rate": float("nan")}, "head_learning_rate=nan"),
        ({"kept_learning_rate": -1e-3}, "kept_learning_rate=-0.001"),
        ({"decay_factor": 0}, "decay_factor=0"),
        ({"decay_epochs": 0}, "decay_epochs=0"),
        ({"rollback": "yes"}, "rollback='yes'"),
        ({"kept_blocks": "stem"}, "kept_blocks='stem'"),
        ({"kept_blocks": [["stem"]], "periods": 4}, "3 for periods=4"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RefinePlan(**kwargs)


@pytest.mark.parametrize(
    "plan, epochs, match",
    [
        (RefinePlan(), 100, "epochs=100 does not fit"),
        (RefinePlan(periods=4), 100, "one of \\[40, 80, 120, 160\\]"),
        (RefinePlan(periods=6), None, "periods=6 needs 5 kept blocks"),
        (RefinePlan(kept_blocks=[["conv9_x"]]), None, "conv9_x"),
        (RefinePlan(), None, "periods=None"),
    ],
)
def test_plan_that_does_not_fit(plan, epochs, match):
    with pytest.raises(ValueError, match=match):
        plan.resolve(BLOCKS, epochs=epochs)


def test_config_round_trip():
    plan = RefinePlan(period_epochs=5, kept_blocks=[["stem"]], rollback=False, decay_epochs=None)
    assert RefinePlan.from_config(plan.get_config()).get_config() == plan.get_config()
