"""`PlateauRule`: end a refine-tuning period when the monitored quantity stops improving."""

import math

# Quantities where higher is better, for `mode="auto"` (Keras' rule: "acc" in the name).
_HIGHER_IS_BETTER = ("acc", "map", "minp", "rank", "top")


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
    """

    def __init__(
        self,
        monitor="loss",
        mode="auto",
        min_delta=0.0,
        patience=2,
        min_period_epochs=1,
        max_period_epochs=None,
        learning_rate_steps="plateau",
        max_decays=1,
    ):
        problems = []
        if not isinstance(monitor, str) or not monitor:
            problems.append(f"`monitor` must be a log key. Received: monitor={monitor!r}")
        if mode not in ("min", "max", "auto"):
            problems.append(f"`mode` must be 'min', 'max' or 'auto'. Received: mode={mode!r}")
        if (
            isinstance(min_delta, bool)
            or not isinstance(min_delta, (int, float))
            or not math.isfinite(min_delta)
            or min_delta < 0
        ):
            problems.append(f"`min_delta` must be a float >= 0. Received: min_delta={min_delta!r}")
        for name, value, minimum in (
            ("patience", patience, 1),
            ("min_period_epochs", min_period_epochs, 1),
            ("max_decays", max_decays, 0),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                problems.append(
                    f"`{name}` must be an integer >= {minimum}. Received: {name}={value!r}"
                )
        if max_period_epochs is not None and (
            isinstance(max_period_epochs, bool)
            or not isinstance(max_period_epochs, int)
            or max_period_epochs < (min_period_epochs if isinstance(min_period_epochs, int) else 1)
        ):
            problems.append(
                "`max_period_epochs` must be None or an integer >= min_period_epochs. "
                f"Received: max_period_epochs={max_period_epochs!r}, "
                f"min_period_epochs={min_period_epochs!r}"
            )
        if learning_rate_steps not in ("plateau", "fixed"):
            problems.append(
                "`learning_rate_steps` must be 'plateau' or 'fixed'. "
                f"Received: learning_rate_steps={learning_rate_steps!r}"
            )
        if problems:
            raise ValueError(" ".join(problems))
        self.monitor = monitor
        self.mode = mode
        self.min_delta = float(min_delta)
        self.patience = patience
        self.min_period_epochs = min_period_epochs
        self.max_period_epochs = max_period_epochs
        self.learning_rate_steps = learning_rate_steps
        self.max_decays = max_decays

    @property
    def higher_is_better(self):
        if self.mode != "auto":
            return self.mode == "max"
        return any(word in self.monitor.lower() for word in _HIGHER_IS_BETTER)

    def tracker(self):
        """A fresh `PlateauTracker` for one training run."""
        return PlateauTracker(self)

    def get_config(self):
        return {
            "monitor": self.monitor,
            "mode": self.mode,
            "min_delta": self.min_delta,
            "patience": self.patience,
            "min_period_epochs": self.min_period_epochs,
            "max_period_epochs": self.max_period_epochs,
            "learning_rate_steps": self.learning_rate_steps,
            "max_decays": self.max_decays,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"PlateauRule({args})"


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
