"""`RefinePlan`: the periods, rollbacks and learning rates of rolling-back refine-tuning."""

import dataclasses
import math

from keras_rollback.plateau_rule import PlateauRule


@dataclasses.dataclass(frozen=True)
class Period:
    """One resolved training period of a `RefinePlan`.

    Attributes:
        number: 1-based period number; 0 for an FC warm-up period.
        start_epoch: First epoch (0-based, as in `model.fit`).
        epochs: Number of epochs.
        rolled_back: Blocks restored from the pre-trained snapshot at the
            period's first epoch.
        kept: Blocks that continue from the previous period's weights at the
            kept learning rate.
        base_learning_rates: Learning rate of each group at the period's
            first epoch (blocks by name, and the head).
        decay_epochs: Epochs between learning-rate decays, or None.
        decay_factor: Factor applied at each decay.
        decay_at: Epochs from which one more decay applies, or None (then
            `decay_epochs` rules). Set by plateau-triggered plans.
    """

    number: int
    start_epoch: int
    epochs: int
    rolled_back: tuple
    kept: tuple
    base_learning_rates: dict
    decay_epochs: int | None
    decay_factor: float
    decay_at: tuple | None = None

    @property
    def end_epoch(self):
        """One past the period's last epoch."""
        return self.start_epoch + self.epochs

    def learning_rates(self, epoch):
        """Learning rate of each group at `epoch` (step decay inside the period)."""
        if not self.start_epoch <= epoch < self.end_epoch:
            raise ValueError(
                f"Epoch {epoch} is outside period {self.number} "
                f"(epochs {self.start_epoch}-{self.end_epoch - 1})."
            )
        if self.decay_at is not None:
            decays = sum(1 for start in self.decay_at if start <= epoch)
        elif self.decay_epochs is None:
            decays = 0
        else:
            decays = (epoch - self.start_epoch) // self.decay_epochs
        scale = self.decay_factor**decays
        return {group: rate * scale for group, rate in self.base_learning_rates.items()}


class RefinePlan:
    """The schedule of rolling-back refine-tuning, and of the baselines it is compared with.

    Defaults are the paper's (Ro et al., AAAI 2019) and, where the paper is
    silent, the authors' released code: periods of 40 epochs; in period 1
    every block trains at 0.01 and the new head at 0.1; at the start of
    period `p >= 2` blocks `1..p-1` are kept (they continue at 0.001),
    blocks `p..N` are rolled back to their pre-trained weights (and restart
    at 0.01), and the head continues at 0.01; inside every period the rates
    are multiplied by 0.1 after 20 epochs (PyTorch `StepLR(20, 0.1)`).

    The baselines of the paper are options of the same plan:

    * plain fine-tuning: `RefinePlan(periods=1)`;
    * "base_cy" (the same learning-rate restarts, no rollback):
      `RefinePlan(rollback=False)`;
    * FC warm-up (backbone frozen while the head trains for `k` epochs, then
      ordinary fine-tuning): `RefinePlan(periods=1, warmup_epochs=k)`;
    * Table 1 (after fine-tuning, keep only block `i` and roll back all
      others): `RefinePlan(periods=2, kept_blocks=[["conv3_x"]])`.

    With `plateau=PlateauRule(...)`, periods end when the monitored quantity
    stops improving instead of every `period_epochs`: `periods` is then the
    largest number of periods (default: one per block), the training length
    is `fit`'s `epochs` (or `warmup_epochs + periods * period_epochs` when
    resolved without it), and `resolve` gives period 1 running to the end;
    `RollbackRefine` ends it (and starts the next) as plateaus come.

    Example:

    ```python
    plan = RefinePlan(period_epochs=40, periods=4)
    for period in plan.resolve(partition.block_names):
        print(period.number, period.rolled_back, period.learning_rates(period.start_epoch))
    ```

    Args:
        period_epochs: Integer > 0. Epochs per period. Defaults to `40`.
        periods: Integer > 0, or None to derive it from the number of
            training epochs (`epochs = warmup_epochs + periods * period_epochs`)
            or from `kept_blocks`. Defaults to `None`.
        kept_blocks: Optional list, one entry per period after the first, of
            the block names kept at that period's start (all other blocks are
            rolled back). Defaults to `None`: period `p` keeps the first
            `p - 1` blocks.
        rollback: Boolean. Whether blocks that are not kept are restored from
            the pre-trained snapshot; False gives "base_cy" (learning rates and
            momentum restart exactly as with rollback, weights continue).
            Defaults to `True`.
        warmup_epochs: Integer >= 0. Epochs of FC warm-up before period 1:
            backbone learning rate 0, head at `head_learning_rate`.
            Defaults to `0`.
        learning_rate: Float > 0. Backbone rate in period 1, and rate of the
            rolled-back blocks in later periods. Defaults to `0.01`.
        head_learning_rate: Float >= 0. Head rate in period 1 and in the
            warm-up. Defaults to `0.1`.
        kept_learning_rate: Float >= 0. Rate of the kept blocks from period 2
            on. Defaults to `0.001`.
        refine_head_learning_rate: Float >= 0. Head rate from period 2 on.
            Defaults to `0.01`.
        decay_epochs: Integer > 0 or None. Epochs between step decays inside a
            period; None disables decay. Defaults to `20`.
        decay_factor: Float in `(0, 1]`. Multiplier applied at each decay.
            Defaults to `0.1`.
        plateau: Optional `PlateauRule`: periods end on plateaus of a
            monitored quantity. Defaults to `None` (fixed-length periods).
    """

    def __init__(
        self,
        period_epochs=40,
        periods=None,
        kept_blocks=None,
        rollback=True,
        warmup_epochs=0,
        learning_rate=0.01,
        head_learning_rate=0.1,
        kept_learning_rate=0.001,
        refine_head_learning_rate=0.01,
        decay_epochs=20,
        decay_factor=0.1,
        plateau=None,
    ):
        _check_int("period_epochs", period_epochs, minimum=1)
        if periods is not None:
            _check_int("periods", periods, minimum=1)
        _check_int("warmup_epochs", warmup_epochs, minimum=0)
        if decay_epochs is not None:
            _check_int("decay_epochs", decay_epochs, minimum=1)
        _check_rate("learning_rate", learning_rate, positive=True)
        for name, value in (
            ("head_learning_rate", head_learning_rate),
            ("kept_learning_rate", kept_learning_rate),
            ("refine_head_learning_rate", refine_head_learning_rate),
        ):
            _check_rate(name, value)
        if not isinstance(decay_factor, (int, float)) or not 0 < decay_factor <= 1:
            raise ValueError(
                f"`decay_factor` must be a float in (0, 1]. Received: decay_factor={decay_factor!r}"
            )
        if plateau is not None and not isinstance(plateau, PlateauRule):
            raise ValueError(f"`plateau` must be a PlateauRule. Received: plateau={plateau!r}")
        if not isinstance(rollback, bool):
            raise ValueError(f"`rollback` must be a boolean. Received: rollback={rollback!r}")
        if kept_blocks is not None:
            if isinstance(kept_blocks, str) or not all(
                not isinstance(k, str) and all(isinstance(b, str) for b in k) for k in kept_blocks
            ):
                raise ValueError(
                    "`kept_blocks` must be a list (one entry per period after the first) "
                    f"of lists of block names. Received: kept_blocks={kept_blocks!r}"
                )
            kept_blocks = [tuple(k) for k in kept_blocks]
            if periods is None:
                periods = len(kept_blocks) + 1
            elif len(kept_blocks) != periods - 1:
                raise ValueError(
                    f"`kept_blocks` needs one entry per period after the first: "
                    f"{periods - 1} for periods={periods}. Received {len(kept_blocks)}: "
                    f"kept_blocks={kept_blocks!r}"
                )
        self.period_epochs = period_epochs
        self.periods = periods
        self.kept_blocks = kept_blocks
        self.rollback = rollback
        self.warmup_epochs = warmup_epochs
        self.learning_rate = float(learning_rate)
        self.head_learning_rate = float(head_learning_rate)
        self.kept_learning_rate = float(kept_learning_rate)
        self.refine_head_learning_rate = float(refine_head_learning_rate)
        self.decay_epochs = decay_epochs
        self.decay_factor = float(decay_factor)
        self.plateau = plateau

    def num_periods(self, epochs=None):
        """Number of periods, derived from the training `epochs` when not fixed."""
        if self.periods is not None:
            return self.periods
        if self.plateau is not None and self.kept_blocks is None:
            return None  # One per block, known from the partition.
        if epochs is None:
            raise ValueError(
                "The plan has periods=None: give the number of training epochs to derive it."
            )
        body = epochs - self.warmup_epochs
        if body <= 0 or body % self.period_epochs:
            raise ValueError(
                f"Training for epochs={epochs} does not fit the plan: epochs must be "
                f"warmup_epochs ({self.warmup_epochs}) plus a positive multiple of "
                f"period_epochs ({self.period_epochs})."
            )
        return body // self.period_epochs

    def total_epochs(self, epochs=None):
        """Epochs of the whole plan."""
        return self.warmup_epochs + self.num_periods(epochs) * self.period_epochs

    def resolve(self, block_names, head_name="head", epochs=None):
        """The plan's periods for a partition's blocks.

        Args:
            block_names: Block names of the partition, lowest first.
            head_name: Name of the head group. Defaults to `"head"`.
            epochs: Optional integer. Number of training epochs; it must end at
                a period boundary of the plan (and derives `periods` when the
                plan leaves it open).

        Returns:
            A tuple of `Period`s (the warm-up first, if any). For a plateau
            plan: the warm-up and period 1 running to the last epoch.
        """
        block_names = tuple(block_names)
        if self.plateau is not None:
            self.max_periods(block_names)
            if epochs is None:
                if self.periods is None:
                    raise ValueError(
                        "A plateau plan with periods=None needs the number of training epochs."
                    )
                epochs = self.total_epochs()
            if epochs <= self.warmup_epochs:
                raise ValueError(
                    f"Training for epochs={epochs} leaves no epoch after the "
                    f"warmup_epochs={self.warmup_epochs}."
                )
            first = self.period(
                1, self.warmup_epochs, epochs - self.warmup_epochs, block_names, head_name
            )
            return self._warmup(block_names, head_name) + (first,)
        periods = self.num_periods(epochs)
        if epochs is not None:
            self._check_epochs(epochs, periods)
        self._kept_blocks(block_names, periods)  # Checks them all before any period.
        resolved = list(self._warmup(block_names, head_name))
        start = self.warmup_epochs
        for number in range(1, periods + 1):
            resolved.append(self.period(number, start, self.period_epochs, block_names, head_name))
            start += self.period_epochs
        return tuple(resolved)

    def max_periods(self, block_names):
        """Most periods the plan can run on these blocks (a plateau plan's cap)."""
        if self.kept_blocks is not None:
            return len(self.kept_blocks) + 1
        if self.periods is not None:
            self._kept_blocks(tuple(block_names), self.periods)
            return self.periods
        return len(block_names)

    def period(self, number, start_epoch, epochs, block_names, head_name="head"):
        """Period `number` (1-based) of the plan, starting at `start_epoch`, `epochs` long."""
        block_names = tuple(block_names)
        if number == 1:
            rates = dict.fromkeys(block_names, self.learning_rate)
            rates[head_name] = self.head_learning_rate
            return self._period(1, start_epoch, epochs, (), (), rates)
        kept = self._kept_blocks(block_names, max(number, self.periods or 0))[number - 2]
        rates = {
            b: self.kept_learning_rate if b in kept else self.learning_rate for b in block_names
        }
        rates[head_name] = self.refine_head_learning_rate
        restarted = tuple(b for b in block_names if b not in kept)
        rolled_back = restarted if self.rollback else ()
        return self._period(number, start_epoch, epochs, rolled_back, kept, rates)

    def _warmup(self, block_names, head_name):
        if not self.warmup_epochs:
            return ()
        rates = dict.fromkeys(block_names, 0.0)
        rates[head_name] = self.head_learning_rate
        return (self._period(0, 0, self.warmup_epochs, (), (), rates),)

    def _period(self, number, start, epochs, rolled_back, kept, rates):
        plateau_steps = (
            self.plateau is not None and self.plateau.learning_rate_steps == "plateau" and number
        )
        return Period(
            number=number,
            start_epoch=start,
            epochs=epochs,
            rolled_back=rolled_back,
            kept=kept,
            base_learning_rates=rates,
            decay_epochs=self.decay_epochs,
            decay_factor=self.decay_factor,
            decay_at=() if plateau_steps else None,
        )

    def _kept_blocks(self, block_names, periods):
        if self.kept_blocks is None:
            if periods > len(block_names):
                raise ValueError(
                    f"periods={periods} needs {periods - 1} kept blocks in its last "
                    f"period and at least one block to roll back, but the partition "
                    f"has {len(block_names)} blocks {list(block_names)}."
                )
            return [block_names[: p - 1] for p in range(2, periods + 1)]
        for kept in self.kept_blocks:
            unknown = [b for b in kept if b not in block_names]
            if unknown:
                raise ValueError(
                    f"kept_blocks names unknown blocks {unknown}. "
                    f"The partition's blocks are {list(block_names)}."
                )
        return [tuple(b for b in block_names if b in kept) for kept in self.kept_blocks]

    def _check_epochs(self, epochs, periods):
        total = self.warmup_epochs + periods * self.period_epochs
        boundaries = [self.warmup_epochs + p * self.period_epochs for p in range(1, periods + 1)]
        if epochs not in boundaries:
            raise ValueError(
                f"Training for epochs={epochs} does not fit the plan: it must end at a "
                f"period boundary, one of {boundaries} (warmup_epochs={self.warmup_epochs}, "
                f"periods={periods}, period_epochs={self.period_epochs}; "
                f"{total} epochs in all)."
            )

    def get_config(self):
        return {
            "period_epochs": self.period_epochs,
            "periods": self.periods,
            "kept_blocks": None
            if self.kept_blocks is None
            else [list(k) for k in self.kept_blocks],
            "rollback": self.rollback,
            "warmup_epochs": self.warmup_epochs,
            "learning_rate": self.learning_rate,
            "head_learning_rate": self.head_learning_rate,
            "kept_learning_rate": self.kept_learning_rate,
            "refine_head_learning_rate": self.refine_head_learning_rate,
            "decay_epochs": self.decay_epochs,
            "decay_factor": self.decay_factor,
            "plateau": None if self.plateau is None else self.plateau.get_config(),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if config.get("plateau") is not None:
            config["plateau"] = PlateauRule.from_config(config["plateau"])
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"RefinePlan({args})"


def _check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"`{name}` must be {kind}. Received: {name}={value!r}")


def _check_rate(name, value, positive=False):
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
        or (positive and value == 0)
    ):
        kind = "a float > 0" if positive else "a float >= 0"
        raise ValueError(f"`{name}` must be {kind}. Received: {name}={value!r}")
