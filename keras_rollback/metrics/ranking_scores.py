"""RankingScores: the result of a person re-identification ranking evaluation."""

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class RankingScores:
    """CMC, mAP and mINP of a query/gallery evaluation, with the per-query values.

    Returned by `ranking_scores` and `ranking_scores_from_features`. Skipped queries (no
    valid match in the gallery) have `first_match_rank == -1` and NaN per-query values;
    the means are over the valid queries only.

    Example:

    ```python
    scores = ranking_scores(distances, q_pids, g_pids, q_camids, g_camids)
    scores.cmc[0]           # rank-1
    scores.mean_average_precision
    scores.as_logs(prefix="val_")  # {"val_rank1": ..., "val_mAP": ..., "val_mINP": ...}
    ```

    Args:
        cmc: float64 array of shape `(max_rank,)`. `cmc[k]` is the fraction of valid
            queries whose first true match is within the top `k + 1`.
        mean_average_precision: Float. Mean over valid queries of `average_precision`.
        mean_inverse_negative_penalty: Float. mINP (Ye et al., TPAMI 2021).
        average_precision: float64 array of shape `(n_queries,)`, NaN where skipped.
        inverse_negative_penalty: float64 array of shape `(n_queries,)`, NaN where skipped.
        first_match_rank: int64 array of shape `(n_queries,)`. 0-based position of the first
            true match among the valid gallery items, -1 where skipped.
        num_valid_queries: Int. Queries with at least one valid match.
        ap_method: String. `"non_interpolated"` or `"trapezoidal"`.
    """

    cmc: np.ndarray
    mean_average_precision: float
    mean_inverse_negative_penalty: float
    average_precision: np.ndarray
    inverse_negative_penalty: np.ndarray
    first_match_rank: np.ndarray
    num_valid_queries: int
    ap_method: str

    @property
    def num_skipped_queries(self):
        """Queries without any valid match in the gallery."""
        return len(self.first_match_rank) - self.num_valid_queries

    def as_logs(self, *, ranks=(1, 5, 10), prefix=""):
        """Returns `{prefix + "rank1": ..., prefix + "mAP": ..., prefix + "mINP": ...}` floats."""
        logs = {}
        for rank in ranks:
            if not 1 <= rank <= len(self.cmc):
                raise ValueError(
                    f"Received: ranks={tuple(ranks)}. Each rank must be in [1, max_rank="
                    f"{len(self.cmc)}]."
                )
            logs[f"{prefix}rank{rank}"] = float(self.cmc[rank - 1])
        logs[f"{prefix}mAP"] = float(self.mean_average_precision)
        logs[f"{prefix}mINP"] = float(self.mean_inverse_negative_penalty)
        return logs
