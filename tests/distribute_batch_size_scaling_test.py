"""RollbackRefine + LayerwiseSGD on two virtual CPU devices: MirroredStrategy (TF), DataParallel (JAX).

Devices must be configured before the backend initialises, so each case runs this file as a
script in a fresh process (`python tests/distribute_batch_size_scaling_test.py tensorflow|jax OUT.json`): it
trains the same tiny model from the same weights once on one device and once on two, with the
same global batch and periods of two epochs, and records (a) the weights and momentum that
every replica holds before the first step of period 2 and (b) how far the two runs' final
weights, optimizer state, losses and predictions are apart. The pytest cases check the record.
"""

import json
import os
import pathlib
import subprocess
import sys

import pytest

HERE = pathlib.Path(__file__).resolve().parent
REPLICAS = 2
GLOBAL_BATCH = 8
EPOCHS = 4
PERIOD_EPOCHS = 2  # Period 2 starts at epoch 2 with rollback of blocks B2-B4 and momentum reset.


def _run_worker(backend, tmp_path):
    output = tmp_path / f"{backend}.json"
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
    if backend == "jax":
        env["XLA_FLAGS"] = (
            f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={REPLICAS}".strip()
        )
    process = subprocess.run(
        [sys.executable, str(pathlib.Path(__file__).resolve()), backend, str(output)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert process.returncode == 0, (
        f"worker failed:\n{process.stdout[-3000:]}\n{process.stderr[-6000:]}"
    )
    return json.loads(output.read_text())


def _check_record(record):
    assert record["replicas"] == REPLICAS
    # (a) After the rollback, before the first step of period 2, on every replica: ...
    assert record["rolled_back_blocks"] == ["B2", "B3", "B4"]
    assert record["replica_weights_checked"] > 0
    assert (
        record["max_rolled_back_minus_pretrained"] == 0.0
    )  # ...exactly the pre-trained weights...
    assert record["min_change_before_rollback"] > 1e-4  # ...which training had changed,
    assert record["max_kept_minus_previous_epoch"] == 0.0  # kept blocks and head continue,
    assert record["max_momentum_after_reset"] == 0.0  # and every momentum buffer is zero;
    assert record["replica_momenta_checked"] > 0
    assert record["max_replica_disagreement"] == 0.0  # replicas hold identical copies.
    # (b) Two devices train like one device with the same global batch, to round-off.
    assert record["max_final_weight_change"] > 1e-3  # The comparison is not vacuous.
    assert record["max_distributed_minus_single_weights"] < 1e-5
    assert record["max_distributed_minus_single_momentum"] < 1e-5
    assert record["max_distributed_minus_single_loss"] < 1e-5
    assert record["max_distributed_minus_single_predictions"] < 1e-5
    assert record["periods_logged"] == [1, 1, 2, 2]


def test_batch_size_scale_rules():
    from keras_rollback.distribute.batch_size_scaling import batch_size_scale

    assert batch_size_scale(32) == 1.0
    assert batch_size_scale(128) == 4.0
    assert batch_size_scale(8) == 0.25
    assert batch_size_scale(128, rule="sqrt") == 2.0
    assert batch_size_scale(96, reference_batch_size=48) == 2.0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"global_batch_size": 0}, "global_batch_size=0"),
        ({"global_batch_size": 64.0}, "global_batch_size=64.0"),
        ({"global_batch_size": 64, "reference_batch_size": -1}, "reference_batch_size=-1"),
        ({"global_batch_size": 64, "rule": "cubic"}, "rule='cubic'"),
    ],
)
def test_batch_size_scale_rejects_bad_arguments(kwargs, message):
    from keras_rollback.distribute.batch_size_scaling import batch_size_scale

    with pytest.raises(ValueError, match=message):
        batch_size_scale(**kwargs)


def test_scaled_plan_scales_every_rate_and_keeps_the_schedule():
    from keras_rollback import RefinePlan
    from keras_rollback.distribute.batch_size_scaling import scale_plan_for_batch_size

    plan = RefinePlan(period_epochs=4, periods=3, decay_epochs=2, warmup_epochs=1)
    scaled = scale_plan_for_batch_size(plan, 64)
    blocks = ("B1", "B2", "B3")
    original, doubled = plan.resolve(blocks), scaled.resolve(blocks)
    assert [(p.start_epoch, p.epochs, p.rolled_back, p.kept) for p in doubled] == [
        (p.start_epoch, p.epochs, p.rolled_back, p.kept) for p in original
    ]
    for a, b in zip(original, doubled):
        for epoch in range(a.start_epoch, a.end_epoch):
            expected = {group: 2 * rate for group, rate in a.learning_rates(epoch).items()}
            assert b.learning_rates(epoch) == pytest.approx(expected, rel=1e-12)
    assert plan.learning_rate == 0.01  # The given plan is left unchanged.
    with pytest.raises(ValueError, match="must be a RefinePlan"):
        scale_plan_for_batch_size({"learning_rate": 0.01}, 64)


def test_scaled_plateau_plan_keeps_its_plateau_rule():
    from keras_rollback import PlateauRule
    from keras_rollback import RefinePlan
    from keras_rollback.distribute.batch_size_scaling import scale_plan_for_batch_size

    rule = PlateauRule(patience=3, min_period_epochs=2)
    plan = RefinePlan(period_epochs=10, periods=4, plateau=rule)
    scaled = scale_plan_for_batch_size(plan, 128, rule="sqrt")
    assert scaled.plateau == rule
    assert scaled.learning_rate == pytest.approx(2 * plan.learning_rate, rel=1e-12)
    assert scaled.kept_learning_rate == pytest.approx(2 * plan.kept_learning_rate, rel=1e-12)
    # Nothing but the four rates changes.
    rates = (
        "learning_rate",
        "head_learning_rate",
        "kept_learning_rate",
        "refine_head_learning_rate",
    )
    assert {k: v for k, v in scaled.get_config().items() if k not in rates} == {
        k: v for k, v in plan.get_config().items() if k not in rates
    }
    assert plan.learning_rate == 0.01  # The given plan is left unchanged.
    # A plateau plan with kept blocks scales too.
    kept = RefinePlan(kept_blocks=[["B1"], ["B1", "B2"]], plateau=rule)
    assert scale_plan_for_batch_size(kept, 64).kept_blocks == kept.kept_blocks


def test_tensorflow_mirrored_strategy_matches_single_device(tmp_path):
    import keras

    if keras.backend.backend() != "tensorflow":
        pytest.skip("tf.distribute.MirroredStrategy applies to the tensorflow backend only")
    _check_record(_run_worker("tensorflow", tmp_path))


def test_jax_data_parallel_matches_single_device(tmp_path):
    import keras

    if keras.backend.backend() != "jax":
        pytest.skip("keras.distribution.DataParallel is implemented for the jax backend only")
    _check_record(_run_worker("jax", tmp_path))


# ---------------------------------------------------------------------------------------------
# Worker: runs in its own process, with the devices configured before the backend starts.


def _configure_devices(backend):
    """Returns (distributed scope factory, per-replica reader, replicas, synchronized BatchNorm)."""
    if backend == "tensorflow":
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * REPLICAS
        )
        strategy = tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(REPLICAS)])

        def replica_values(variable):
            return [v.numpy() for v in strategy.experimental_local_results(variable.value)]

        # MirroredStrategy runs one program per replica: batch statistics must be synchronized.
        return strategy.scope, replica_values, strategy.num_replicas_in_sync, True

    import contextlib

    import jax
    import keras

    devices = jax.devices("cpu")

    @contextlib.contextmanager
    def data_parallel():
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
        try:
            yield
        finally:
            keras.distribution.set_distribution(None)

    def replica_values(variable):
        return [jax.device_get(shard.data) for shard in variable.value.addressable_shards]

    # DataParallel compiles one SPMD program over the global batch (and Keras allows
    # `synchronized=True` only on TensorFlow).
    return data_parallel, replica_values, len(devices), False


def _worker(backend, output):
    import contextlib

    distributed_scope, replica_values, replicas, synchronized = _configure_devices(backend)

    import keras
    import numpy as np

    sys.path.insert(0, str(HERE))
    from testing_models import TINY_BLOCKS
    from testing_models import tiny_data

    from keras_rollback import BlockPartition
    from keras_rollback import LayerwiseSGD
    from keras_rollback import RollbackRefine

    def build(scope, initial_weights=None):
        with scope():
            keras.utils.set_random_seed(0)
            inputs = keras.Input((8, 8, 3))
            x = inputs
            for block in range(1, 5):
                x = keras.layers.Conv2D(4, 3, padding="same", name=f"b{block}_conv")(x)
                # Batch statistics over the global batch on every replica, as on one device.
                x = keras.layers.BatchNormalization(synchronized=synchronized, name=f"b{block}_bn")(
                    x
                )
                x = keras.layers.ReLU(name=f"b{block}_relu")(x)
            x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
            model = keras.Model(inputs, keras.layers.Dense(3, name="fc")(x), name="tiny_cnn")
            if initial_weights is not None:
                model.set_weights(initial_weights)
            model.compile(
                optimizer=LayerwiseSGD(momentum=0.9, nesterov=True, weight_decay=5e-4),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            )
        return model

    class Probe(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_begin(self, batch, logs=None):
            if self.epoch == PERIOD_EPOCHS and batch == 0:
                model = self.model  # Syncs JAX's trainer state into the variables.
                self.weights = {w.path: replica_values(w) for w in model.weights}
                self.momenta = [replica_values(m) for m in model.optimizer.momentums]

        def on_epoch_end(self, epoch, logs=None):
            if epoch == PERIOD_EPOCHS - 1:
                self.previous_epoch = {
                    w.path: keras.ops.convert_to_numpy(w).copy() for w in self.model.weights
                }

    x, y = tiny_data(n=2 * GLOBAL_BATCH)
    runs = {}
    for name, scope in (("single", contextlib.nullcontext), ("distributed", distributed_scope)):
        model = build(scope, None if name == "single" else runs["single"]["initial"])
        partition = BlockPartition(model, blocks=TINY_BLOCKS, head="fc/")
        initial = model.get_weights()
        probe = Probe()
        refine = RollbackRefine(partition, period_epochs=PERIOD_EPOCHS, verbose=0)
        with scope():
            history = model.fit(
                x,
                y,
                batch_size=GLOBAL_BATCH,
                epochs=EPOCHS,
                shuffle=False,
                verbose=0,
                callbacks=[refine, probe],
            )
            predictions = model.predict(x, batch_size=GLOBAL_BATCH, verbose=0)
        runs[name] = {
            "initial": initial,
            "model": model,
            "partition": partition,
            "probe": probe,
            "history": history.history,
            "predictions": predictions,
            "momenta": [keras.ops.convert_to_numpy(m) for m in model.optimizer.momentums],
            "refine": refine,
        }

    single, dist = runs["single"], runs["distributed"]
    partition, probe = dist["partition"], dist["probe"]
    pretrained = dict(zip([w.path for w in dist["model"].weights], single["initial"]))
    rolled_back = list(dist["refine"].epoch_records[PERIOD_EPOCHS]["rolled_back"])
    rolled_paths = [p for block in rolled_back for p in partition.paths(block)]
    other_paths = [p for p in pretrained if p not in rolled_paths]

    def max_abs(pairs):
        return max(
            (float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in pairs), default=0.0
        )

    record = {
        "replicas": replicas,
        "rolled_back_blocks": rolled_back,
        "replica_weights_checked": sum(len(probe.weights[p]) for p in rolled_paths),
        "max_rolled_back_minus_pretrained": max_abs(
            (r, pretrained[p]) for p in rolled_paths for r in probe.weights[p]
        ),
        # Per rolled-back block, the largest change of its weights over period 1.
        "min_change_before_rollback": min(
            max(
                float(np.max(np.abs(probe.previous_epoch[p] - pretrained[p])))
                for p in partition.paths(block)
            )
            for block in rolled_back
        ),
        "max_kept_minus_previous_epoch": max_abs(
            (r, probe.previous_epoch[p]) for p in other_paths for r in probe.weights[p]
        ),
        "replica_momenta_checked": sum(len(m) for m in probe.momenta),
        "max_momentum_after_reset": max_abs((r, 0.0) for m in probe.momenta for r in m),
        "max_replica_disagreement": max_abs(
            (r, values[0]) for values in [*probe.weights.values(), *probe.momenta] for r in values
        ),
        "max_final_weight_change": max_abs(zip(single["model"].get_weights(), single["initial"])),
        "max_distributed_minus_single_weights": max_abs(
            zip(dist["model"].get_weights(), single["model"].get_weights())
        ),
        "max_distributed_minus_single_momentum": max_abs(zip(dist["momenta"], single["momenta"])),
        "max_distributed_minus_single_loss": max_abs(
            zip(dist["history"]["loss"], single["history"]["loss"])
        ),
        "max_distributed_minus_single_predictions": max_abs(
            [(dist["predictions"], single["predictions"])]
        ),
        "periods_logged": [int(p) for p in dist["history"]["period"]],
    }
    pathlib.Path(output).write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    _worker(sys.argv[1], sys.argv[2])
