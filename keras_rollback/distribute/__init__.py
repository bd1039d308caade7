"""Training over several processes and devices: the job, and the plan scaled to its batch."""

from keras_rollback.distribute.batch_size_scaling import batch_size_scale
from keras_rollback.distribute.batch_size_scaling import scale_plan_for_batch_size
from keras_rollback.distribute.multi_process_job import MultiProcessJob

__all__ = ["MultiProcessJob", "batch_size_scale", "scale_plan_for_batch_size"]
