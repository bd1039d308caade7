"""RefinePlan against the schedule written out by hand from the paper and the authors' code."""

import dataclasses
import json

import pytest

from keras_rollback import PlateauRule
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


def test_linear_probe_then_fine_tune_is_the_fc_warm_up():
    plan = RefinePlan.linear_probe_then_fine_tune(
        probe_epochs=5, fine_tune_epochs=30, learning_rate=0.001, decay_epochs=None
    )
    assert plan == RefinePlan(
        warmup_epochs=5,
        period_epochs=30,
        periods=1,
        rollback=False,
        learning_rate=0.001,
        decay_epochs=None,
    )
    probe, fine_tune = plan.resolve(BLOCKS, epochs=35)
    assert (probe.number, probe.epochs, fine_tune.start_epoch, fine_tune.epochs) == (0, 5, 5, 30)
    assert probe.learning_rates(0) == _rates(0, 0, 0, 0, 0, 0.1)
    assert fine_tune.learning_rates(34) == _rates(0.001, 0.001, 0.001, 0.001, 0.001, 0.1)
    assert fine_tune.rolled_back == ()


def test_linear_probe_then_fine_tune_checks_its_arguments():
    with pytest.raises(
        ValueError, match=r"Received: probe_epochs=0\..*Received: fine_tune_epochs=2.5"
    ):
        RefinePlan.linear_probe_then_fine_tune(probe_epochs=0, fine_tune_epochs=2.5)
    with pytest.raises(ValueError, match=r"Received: periods=2, warmup_epochs=3\. LP-FT sets"):
        RefinePlan.linear_probe_then_fine_tune(
            probe_epochs=1, fine_tune_epochs=2, periods=2, warmup_epochs=3
        )


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


PLANS = [
    RefinePlan(),
    RefinePlan(period_epochs=5, kept_blocks=[["stem"]], rollback=False, decay_epochs=None),
    RefinePlan(periods=1, warmup_epochs=20, learning_rate=1, decay_factor=1),
    RefinePlan(periods=4, plateau=PlateauRule(monitor="val_mAP", patience=3, max_period_epochs=9)),
]


@pytest.mark.parametrize("plan", PLANS, ids=["default", "kept_blocks", "warmup", "plateau"])
def test_config_round_trip(plan):
    config = plan.get_config()
    assert set(config) == {field.name for field in dataclasses.fields(RefinePlan)}
    assert RefinePlan.from_config(config) == plan
    # Through JSON too, as experiments and checkpoints save it.
    assert RefinePlan.from_config(json.loads(json.dumps(config))) == plan
    assert hash(RefinePlan.from_config(config)) == hash(plan)


def test_config_saved_by_earlier_versions_loads():
    saved = {
        "period_epochs": 40,
        "periods": 2,
        "kept_blocks": [["conv3_x"]],
        "rollback": True,
        "warmup_epochs": 0,
        "learning_rate": 0.01,
        "head_learning_rate": 0.1,
        "kept_learning_rate": 0.001,
        "refine_head_learning_rate": 0.01,
        "decay_epochs": 20,
        "decay_factor": 0.1,
        "plateau": {
            "monitor": "loss",
            "mode": "auto",
            "min_delta": 0.0,
            "patience": 2,
            "min_period_epochs": 1,
            "max_period_epochs": None,
            "learning_rate_steps": "plateau",
            "max_decays": 1,
        },
    }
    plan = RefinePlan.from_config(saved)
    assert plan == RefinePlan(kept_blocks=[["conv3_x"]], plateau=PlateauRule())
    # Saved again with the fields added since, at their defaults (no layer-wise decay).
    assert plan.get_config() == {**saved, "layer_decay": 1.0}
    with pytest.raises(ValueError, match=r"Unknown RefinePlan config keys \['epochs'\]"):
        RefinePlan.from_config({**saved, "epochs": 160})


def test_arguments_are_normalised_to_immutable_values():
    plan = RefinePlan(kept_blocks=[["stem"], ["stem", "conv2_x"]], learning_rate=1)
    assert plan.kept_blocks == (("stem",), ("stem", "conv2_x"))
    assert plan.periods == 3
    assert isinstance(plan.learning_rate, float)
    same = RefinePlan(periods=3, kept_blocks=(("stem",), ("stem", "conv2_x")), learning_rate=1.0)
    assert plan == same
    assert len({plan, same}) == 1


def test_plan_is_frozen():
    plan = RefinePlan()
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.period_epochs = 10  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.plateau = PlateauRule()  # type: ignore[misc]


def test_replace_copies_and_validates_again():
    plan = RefinePlan(period_epochs=10, periods=3)
    copy = dataclasses.replace(plan, rollback=False)
    assert (copy.rollback, copy.period_epochs, copy.periods) == (False, 10, 3)
    assert plan.rollback is True
    with pytest.raises(
        ValueError, match=r"Received: period_epochs=0\. Expected a positive integer\."
    ):
        dataclasses.replace(plan, period_epochs=0)
    with pytest.raises(ValueError, match=r"Received: plateau=\{'patience': 3\}"):
        dataclasses.replace(plan, plateau={"patience": 3})


def test_every_bad_argument_is_reported_at_once():
    with pytest.raises(ValueError) as error:
        RefinePlan(period_epochs=0, warmup_epochs=-1, learning_rate=0.0, rollback=None)
    message = str(error.value)
    for received in ("period_epochs=0", "warmup_epochs=-1", "learning_rate=0.0", "rollback=None"):
        assert f"Received: {received}." in message


def test_layer_decay_scales_each_block_by_its_depth_from_the_top_in_every_period():
    """BEiT's layer-wise decay, hand-computed: head x1, top block x0.5, then x0.25, x0.125."""
    plan = RefinePlan(period_epochs=10, periods=3, decay_epochs=None, layer_decay=0.5)
    first, second, third = plan.resolve(["B1", "B2", "B3"])
    assert first.base_learning_rates == {"B1": 0.00125, "B2": 0.0025, "B3": 0.005, "head": 0.1}
    # Period 2 keeps B1 (kept rate 0.001), rolls back B2, B3 (rate 0.01): decay applies to both.
    assert second.base_learning_rates == {"B1": 0.000125, "B2": 0.0025, "B3": 0.005, "head": 0.01}
    assert third.base_learning_rates == {"B1": 0.000125, "B2": 0.00025, "B3": 0.005, "head": 0.01}
    assert second.rolled_back == ("B2", "B3") and third.rolled_back == ("B3",)
    # 1.0 (the default) leaves every rate as the paper's schedule has it.
    undecayed = RefinePlan(period_epochs=10, periods=3).resolve(["B1", "B2", "B3"])
    assert undecayed[0].base_learning_rates == {"B1": 0.01, "B2": 0.01, "B3": 0.01, "head": 0.1}


@pytest.mark.parametrize("layer_decay", [0, -0.5, 1.5, "0.5", None])
def test_layer_decay_must_be_in_zero_one(layer_decay):
    with pytest.raises(ValueError, match=f"Received: layer_decay={layer_decay!r}"):
        RefinePlan(layer_decay=layer_decay)
