"""`PlateauRule`: end a refine-tuning period when the monitored quantity stops improving."""

import dataclasses
import math

# Quantities where higher is better, for `mode="auto"` (Keras' rule: "acc" in the name).
_HIGHER_IS_BETTER = ("acc", "map", "minp", "rank", "top")


@dataclasses.dataclass(frozen=True)
class PlateauRule:
    """When to roll back: the monitored quantity has stopped improving.

    The paper rolls back after a fixed number of epochs, once "the network
    converges to a local minimum". This rule makes that a test, in the style
    of `keras.callbacks.ReduceLROnPlateau`: after each epoch, the monitored
    quantity (training loss by default, or a metric another callback puts in
    the logs before `RollbackRefine` reads them) improves when it beats the
    best value of the current period by more than `min_delta`. After
    `patience` epochs without improvement:

    * with `learning_rate_steps="plateau"`, the period's learning rates are
      first multiplied by the plan's `decay_factor` (up to `max_decays`
      times per period, like the paper's one step decay inside a period),
      and only the next plateau ends the period;
    * with `learning_rate_steps="fixed"`, the period ends (the plan's fixed
      step decay, every `decay_epochs`, runs inside it).

    A period lasts at least `min_period_epochs` and at most
    `max_period_epochs` epochs. A new period starts with a fresh best value
    (rolling back raises the loss). Give it to `RefinePlan(plateau=...)`.

    Example:

    ```python
    plan = RefinePlan(plateau=PlateauRule(patience=3, min_period_epochs=10,
                                          max_period_epochs=60))
    model.fit(train_ds, epochs=160, callbacks=[RollbackRefine(partition, plan=plan)])
    ```

    Args:
        monitor: String. Epoch-log key to watch. Defaults to `"loss"`.
        mode: `"min"`, `"max"` or `"auto"` (max for accuracy, mAP, mINP, rank
            and top-k names, min otherwise). Defaults to `"auto"`.
        min_delta: Float >= 0. Smallest change that counts as an improvement.
            Defaults to `0.0`.
        patience: Integer > 0. Epochs without improvement that make a plateau.
            Defaults to `2`.
        min_period_epochs: Integer > 0. Shortest period. Defaults to `1`.
        max_period_epochs: Integer > 0 or None. Longest period (it ends even
            without a plateau). Defaults to `None`.
        learning_rate_steps: `"plateau"` or `"fixed"`. Whether learning-rate
            decays inside a period follow plateaus too, or the plan's fixed
            step decay. Defaults to `"plateau"`.
        max_decays: Integer >= 0. Plateau decays per period before a plateau
            ends it (`learning_rate_steps="plateau"` only). Defaults to `1`.

    The rule is an immutable value (a frozen dataclass): copy it with
    `dataclasses.replace(rule, patience=5)`, which validates again. The state
    of one run (best value, epochs without improvement) is a `PlateauTracker`
    (`rule.tracker()`).
    """

    monitor: str = "loss"
    mode: str = "auto"
    min_delta: float = 0.0
    patience: int = 2
    min_period_epochs: int = 1
    max_period_epochs: int | None = None
    learning_rate_steps: str = "plateau"
    max_decays: int = 1

    def __post_init__(self):
        shortest_problem = _integer_problem("min_period_epochs", self.min_period_epochs, 1)
        problems = [
            _choice_problem("mode", self.mode, ("min", "max", "auto")),
            _number_problem("min_delta", self.min_delta, lambda v: v >= 0, "a float >= 0"),
            _integer_problem("patience", self.patience, 1),
            shortest_problem,
            _choice_problem("learning_rate_steps", self.learning_rate_steps, ("plateau", "fixed")),
            _integer_problem("max_decays", self.max_decays, 0),
        ]
        if not isinstance(self.monitor, str) or not self.monitor:
            problems.insert(0, f"Received: monitor={self.monitor!r}. Expected an epoch-log key.")
        shortest = 1 if shortest_problem else self.min_period_epochs
        if self.max_period_epochs is not None and _integer_problem(
            "max_period_epochs", self.max_period_epochs, shortest
        ):
            problems.append(
                f"Received: max_period_epochs={self.max_period_epochs!r}. Expected None or an "
                f"integer >= min_period_epochs ({shortest})."
            )
        _raise_problems("PlateauRule", problems)
        object.__setattr__(self, "min_delta", float(self.min_delta))

    @property
    def higher_is_better(self):
        if self.mode != "auto":
            return self.mode == "max"
        return any(word in self.monitor.lower() for word in _HIGHER_IS_BETTER)

    def tracker(self):
        """A fresh `PlateauTracker` for one training run."""
        return PlateauTracker(self)

    def get_config(self):
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


class PlateauTracker:
    """The state of a `PlateauRule` through one run: best value, wait, decays, period length.

    Deterministic in the monitored values, so a resumed run rebuilds it (and
    the realised period boundaries) by replaying the recorded values.
    """

    def __init__(self, rule):
        self.rule = rule
        self.start_period(0)

    def start_period(self, epoch):
        self.period_start = epoch
        self.best = None
        self.wait = 0
        self.decays = 0

    def update(self, epoch, value):
        """Feeds the value logged at the end of `epoch`.

        Returns:
            `"rollback"` (end the period after this epoch), `"decay"` (decay
            the learning rates from the next epoch on) or None.
        """
        rule = self.rule
        if not math.isfinite(value):
            raise ValueError(
                f"PlateauRule: the monitored {rule.monitor!r} is {value} at epoch {epoch + 1}."
            )
        if self.best is None or (
            value > self.best + rule.min_delta
            if rule.higher_is_better
            else value < self.best - rule.min_delta
        ):
            self.best = value
            self.wait = 0
        else:
            self.wait += 1
        length = epoch - self.period_start + 1
        if rule.max_period_epochs is not None and length >= rule.max_period_epochs:
            return "rollback"
        if self.wait < rule.patience:
            return None
        if rule.learning_rate_steps == "plateau" and self.decays < rule.max_decays:
            self.decays += 1
            self.wait = 0
            return "decay"
        if length >= rule.min_period_epochs:
            return "rollback"
        return None


def _integer_problem(name, value, minimum):
    """None if `value` is an integer >= `minimum`, else what is wrong (echoing the value)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        return f"Received: {name}={value!r}. Expected {kind}."
    return None


def _number_problem(name, value, valid, expected):
    """None if `value` is a finite number for which `valid(value)` holds, else what is wrong."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or not valid(value)
    ):
        return f"Received: {name}={value!r}. Expected {expected}."
    return None


def _choice_problem(name, value, choices):
    """None if `value` is one of `choices`, else what is wrong (echoing the value)."""
    if isinstance(value, str) and value in choices:
        return None
    expected = ", ".join(repr(c) for c in choices[:-1]) + f" or {choices[-1]!r}"
    return f"Received: {name}={value!r}. Expected {expected}."


def _raise_problems(owner, problems):
    """Raises one `ValueError` listing every problem found (None entries are no problem)."""
    problems = [p for p in problems if p is not None]
    if problems:
        raise ValueError(f"Invalid {owner} arguments. " + " ".join(problems))
