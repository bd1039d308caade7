"""Period 1 trained until it converges, measured: the regime the paper's premise needs.

Rolling back rests on one premise: fine-tuning *converges* (the high blocks fit the task)
before the low blocks have adapted, so restarting the high blocks from their pre-trained
weights lets the low ones adapt further. A period that ends while the training loss still
falls (the under-trained study, docs/study.md) cannot test that. With
`config.converged_period_one.enabled`, the shared period 1 (`fine_tune/`, see
`experiments/shared_period_one.py`) trains until a measured plateau instead of for
`plan.period_epochs`, and every other method's periods are then as long as that period 1.

A plateau (`ConvergenceRule`) is an epoch at which, both:

* the training accuracy (of that epoch) is at least `min_accuracy`;
* the training loss has stopped improving: the best loss of the last `window` epochs is less
  than `min_relative_improvement` (a fraction) below the best loss before them;

and at least `min_epochs` epochs have run (after the plan's rate decay, so that the decayed
rate has had its chance). Period 1 ends at the first plateau, or after `max_epochs` (reported:
the task did not converge within the cap).
"""

import dataclasses

import keras


@dataclasses.dataclass(frozen=True)
class ConvergenceRule:
    """When period 1 has converged (see the module docstring); epochs are 1-based."""

    window: int
    min_relative_improvement: float
    min_accuracy: float
    min_epochs: int
    max_epochs: int

    def __post_init__(self):
        problems = []
        for name in ("window", "min_epochs", "max_epochs"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                problems.append(f"Expected an integer {name} >= 1. Received: {name}={value!r}.")
        if not problems and self.min_epochs > self.max_epochs:
            problems.append(
                f"Expected min_epochs <= max_epochs. Received: min_epochs={self.min_epochs}, "
                f"max_epochs={self.max_epochs}."
            )
        for name, high in (("min_relative_improvement", None), ("min_accuracy", 1.0)):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value < 0 or (high and value > high):
                problems.append(
                    f"Expected {name} in [0, {high or 'inf'}]. Received: {name}={value!r}."
                )
        if problems:
            raise ValueError("Invalid config.converged_period_one: " + " ".join(problems))

    @classmethod
    def from_config(cls, config):
        """The rule of `config.converged_period_one` (a ConfigDict; `enabled` is ignored)."""
        return cls(**{field.name: config[field.name] for field in dataclasses.fields(cls)})

    def converged(self, records):
        """Whether the last of `records` (every epoch's logs in order, with `loss` and
        `accuracy`) is a plateau."""
        epoch = len(records)
        if epoch < max(self.min_epochs, self.window + 1):
            return False
        if records[-1]["accuracy"] < self.min_accuracy:
            return False
        losses = [record["loss"] for record in records]
        before, recent = min(losses[: -self.window]), min(losses[-self.window :])
        return before - recent < self.min_relative_improvement * before

    def period_one_epochs(self, records):
        """The length of period 1 given its logs so far: the first plateau's epoch,
        `max_epochs` if it ran that long without one, or None (not decided yet)."""
        for epoch in range(1, min(len(records), self.max_epochs) + 1):
            if self.converged(records[:epoch]):
                return epoch
        return self.max_epochs if len(records) >= self.max_epochs else None


class StopAtConvergence(keras.callbacks.Callback):
    """Ends training (and period 1) at the first epoch `rule` calls a plateau.

    Put it after `RollbackRefine` and before `ReIDEvaluationCallback(period_ends=True)`: it
    marks the epoch as its period's end in the logs, so that the epoch is evaluated.

    Args:
        rule: The `ConvergenceRule`.
        earlier_records: The logs of the epochs trained before this `fit` (a resumed run).
    """

    def __init__(self, rule, earlier_records=()):
        super().__init__()
        self.rule = rule
        self.earlier_records = list(earlier_records)
        self.records = []

    def on_train_begin(self, logs=None):
        self.records = list(self.earlier_records)

    def on_epoch_end(self, epoch, logs=None):
        self.records = self.records[:epoch] + [dict(logs or {})]
        if self.rule.converged(self.records):
            logs["period_end"] = 1.0
            self.model.stop_training = True
