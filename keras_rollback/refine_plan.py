"""`RefinePlan`: the periods, rollbacks and learning rates of rolling-back refine-tuning."""

import dataclasses

from keras_rollback.plateau_rule import PlateauRule
from keras_rollback.plateau_rule import _integer_problem
from keras_rollback.plateau_rule import _number_problem
from keras_rollback.plateau_rule import _raise_problems

# The plan's learning-rate fields (the first must be > 0, the others >= 0).
LEARNING_RATE_FIELDS = (
    "learning_rate",
    "head_learning_rate",
    "kept_learning_rate",
    "refine_head_learning_rate",
)
# The fields that `RefinePlan.linear_probe_then_fine_tune` sets itself.
_LP_FT_FIELDS = ("period_epochs", "periods", "kept_blocks", "rollback", "warmup_epochs", "plateau")


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


@dataclasses.dataclass(frozen=True)
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
      ordinary fine-tuning): `RefinePlan(periods=1, warmup_epochs=k)`, known
      as LP-FT (Kumar et al., ICLR 2022):
      `RefinePlan.linear_probe_then_fine_tune(probe_epochs=k, fine_tune_epochs=n)`;
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
        layer_decay: Float in `(0, 1]`. Layer-wise learning-rate decay (BEiT,
            MAE): each block's rate is multiplied by `layer_decay ** depth`,
            its depth counted from the top (the highest block 1, the one below
            2, ...; the head 0), in every period and for kept and rolled-back
            blocks alike, so it composes with rolling back. `1.0` turns it off.
            Defaults to `1.0`.

    A plan is an immutable value (a frozen dataclass; `kept_blocks` is stored
    as a tuple of tuples, and `periods` as derived from it): copy it with
    `dataclasses.replace(plan, rollback=False)`, which validates again, and
    save it with `get_config()` (JSON-ready; `from_config` rebuilds an equal
    plan).
    """

    period_epochs: int = 40
    periods: int | None = None
    kept_blocks: tuple[tuple[str, ...], ...] | None = None
    rollback: bool = True
    warmup_epochs: int = 0
    learning_rate: float = 0.01
    head_learning_rate: float = 0.1
    kept_learning_rate: float = 0.001
    refine_head_learning_rate: float = 0.01
    decay_epochs: int | None = 20
    decay_factor: float = 0.1
    plateau: PlateauRule | None = None
    layer_decay: float = 1.0

    def __post_init__(self):
        periods_problem = (
            None if self.periods is None else _integer_problem("periods", self.periods, 1)
        )
        problems = [
            _integer_problem("period_epochs", self.period_epochs, 1),
            periods_problem,
            _integer_problem("warmup_epochs", self.warmup_epochs, 0),
            None
            if self.decay_epochs is None
            else _integer_problem("decay_epochs", self.decay_epochs, 1),
            _number_problem(
                "decay_factor", self.decay_factor, lambda v: 0 < v <= 1, "a float in (0, 1]"
            ),
            _number_problem(
                "layer_decay", self.layer_decay, lambda v: 0 < v <= 1, "a float in (0, 1]"
            ),
        ]
        for name in LEARNING_RATE_FIELDS:
            positive = name == "learning_rate"
            problems.append(
                _number_problem(
                    name,
                    getattr(self, name),
                    (lambda v: v > 0) if positive else (lambda v: v >= 0),
                    "a float > 0" if positive else "a float >= 0",
                )
            )
        if not isinstance(self.rollback, bool):
            problems.append(f"Received: rollback={self.rollback!r}. Expected a boolean.")
        if self.plateau is not None and not isinstance(self.plateau, PlateauRule):
            problems.append(f"Received: plateau={self.plateau!r}. Expected a PlateauRule or None.")
        periods, kept_blocks = self.periods, None
        if self.kept_blocks is not None:
            kept_blocks = _block_name_lists(self.kept_blocks)
            if kept_blocks is None:
                problems.append(
                    f"Received: kept_blocks={self.kept_blocks!r}. Expected a list (one entry "
                    "per period after the first) of lists of block names."
                )
            elif periods is None:
                periods = len(kept_blocks) + 1
            elif periods_problem is None and len(kept_blocks) != periods - 1:
                problems.append(
                    f"Received: kept_blocks={self.kept_blocks!r} ({len(kept_blocks)} entries). "
                    f"Expected one entry per period after the first: {periods - 1} for "
                    f"periods={periods}."
                )
        _raise_problems("RefinePlan", problems)
        for name in LEARNING_RATE_FIELDS:
            object.__setattr__(self, name, float(getattr(self, name)))
        object.__setattr__(self, "decay_factor", float(self.decay_factor))
        object.__setattr__(self, "layer_decay", float(self.layer_decay))
        object.__setattr__(self, "kept_blocks", kept_blocks)
        object.__setattr__(self, "periods", periods)

    @classmethod
    def linear_probe_then_fine_tune(cls, *, probe_epochs, fine_tune_epochs, **fields):
        """LP-FT (Kumar et al., ICLR 2022): train the head on the frozen backbone, then everything.

        Kumar, Raghunathan, Jones, Ma, Liang, "Fine-Tuning can Distort
        Pretrained Features and Underperform Out-of-Distribution": fine-tuning
        a pre-trained network together with a randomly initialised head lets
        the head's early, large gradients distort the pre-trained features.
        Linear probing first (the backbone frozen) gives the head a good start,
        and the fine-tuning that follows changes the features less.

        This is the plan's FC warm-up under its published name:
        `probe_epochs` of warm-up (backbone learning rate 0, its BatchNorm in
        inference mode, head at `head_learning_rate`), then one period of
        `fine_tune_epochs` that trains every block at `learning_rate` and the
        head at `head_learning_rate`, with no rollback. The same as
        `RefinePlan(warmup_epochs=probe_epochs, period_epochs=fine_tune_epochs,
        periods=1, rollback=False)`.

        Example:

        ```python
        plan = RefinePlan.linear_probe_then_fine_tune(
            probe_epochs=10, fine_tune_epochs=40, learning_rate=0.001
        )
        model.fit(train_ds, epochs=50, callbacks=[RollbackRefine(partition, plan=plan)])
        ```

        Args:
            probe_epochs: Integer > 0. Epochs of linear probing (the warm-up).
            fine_tune_epochs: Integer > 0. Epochs of fine-tuning after it.
            **fields: Any other field of the plan (learning rates,
                `decay_epochs`, `decay_factor`, `layer_decay`); the ones that
                shape the periods (`period_epochs`, `periods`, `kept_blocks`,
                `rollback`, `warmup_epochs`, `plateau`) are set by LP-FT.

        Returns:
            The `RefinePlan`.
        """
        shaped = sorted(set(fields) & set(_LP_FT_FIELDS))
        problems = [
            _integer_problem("probe_epochs", probe_epochs, 1),
            _integer_problem("fine_tune_epochs", fine_tune_epochs, 1),
        ]
        if shaped:
            problems.append(
                f"Received: {', '.join(f'{k}={fields[k]!r}' for k in shaped)}. LP-FT sets "
                "these itself (from probe_epochs and fine_tune_epochs)."
            )
        _raise_problems("RefinePlan.linear_probe_then_fine_tune", problems)
        return cls(
            warmup_epochs=probe_epochs,
            period_epochs=fine_tune_epochs,
            periods=1,
            rollback=False,
            **fields,
        )

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
            return self._period(1, start_epoch, epochs, (), (), rates, head_name)
        kept = self._kept_blocks(block_names, max(number, self.periods or 0))[number - 2]
        rates = {
            b: self.kept_learning_rate if b in kept else self.learning_rate for b in block_names
        }
        rates[head_name] = self.refine_head_learning_rate
        restarted = tuple(b for b in block_names if b not in kept)
        rolled_back = restarted if self.rollback else ()
        return self._period(number, start_epoch, epochs, rolled_back, kept, rates, head_name)

    def _warmup(self, block_names, head_name):
        if not self.warmup_epochs:
            return ()
        rates = dict.fromkeys(block_names, 0.0)
        rates[head_name] = self.head_learning_rate
        return (self._period(0, 0, self.warmup_epochs, (), (), rates, head_name),)

    def _decayed_by_depth(self, rates, head_name):
        """`rates` with each block's multiplied by `layer_decay ** depth` (head: depth 0)."""
        blocks = [group for group in rates if group != head_name]  # Lowest first.
        return {
            group: rate
            if group == head_name
            else rate * self.layer_decay ** (len(blocks) - blocks.index(group))
            for group, rate in rates.items()
        }

    def _period(self, number, start, epochs, rolled_back, kept, rates, head_name):
        rates = self._decayed_by_depth(rates, head_name)
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
        """The plan's arguments, JSON-ready (tuples as lists, `plateau` as its config)."""
        return {
            field.name: _config_value(getattr(self, field.name))
            for field in dataclasses.fields(self)
        }

    @classmethod
    def from_config(cls, config):
        """The plan of `get_config()` (also of the configs saved by earlier versions)."""
        config = dict(config)
        unknown = sorted(set(config) - {field.name for field in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"Unknown RefinePlan config keys {unknown}. Received: {config!r}")
        if config.get("plateau") is not None and not isinstance(config["plateau"], PlateauRule):
            config["plateau"] = PlateauRule.from_config(config["plateau"])
        return cls(**config)


def _config_value(value):
    if isinstance(value, PlateauRule):
        return value.get_config()
    if isinstance(value, tuple):
        return [_config_value(item) for item in value]
    return value


def _block_name_lists(value):
    """`value` as a tuple of tuples of block names, or None if it is not a list of lists of them."""
    if isinstance(value, str):
        return None
    try:
        lists = tuple(None if isinstance(names, str) else tuple(names) for names in value)
    except TypeError:
        return None
    if any(names is None or not all(isinstance(b, str) for b in names) for names in lists):
        return None
    return lists
