import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from saerand.sae_training import SaeTrainer, save_layer_checkpoint, train_layer_shard
from saerand.study import SaeHyperparameters
from saerand.tracking import CURVE_TAGS, run_directory

from .test_sae_training import _resumed_settings, _shards

POINT = SaeHyperparameters(4, 4)


def _scalars(directory) -> dict[str, list[tuple[int, float]]]:
    events = EventAccumulator(str(directory))
    events.Reload()
    return {tag: [(event.step, event.value) for event in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_tensorboard_shows_each_saes_curve_once_over_shards_and_a_requeued_shard(tmp_path, tiny_neox, token_ids):
    """Two shards, the second run twice (a job requeued after it had written): TensorBoard reads
    every curve point of the saved curve once, at its batch, with its values."""
    settings = _resumed_settings("adam", buffer_shuffle=False)
    shards = _shards(tmp_path, tiny_neox, token_ids)
    logs = tmp_path / "tensorboard"
    first = train_layer_shard(shards[0], 1, 0, settings, [POINT], 32, 24 * 32, chain=("m", "v"), tensorboard=logs)
    save_layer_checkpoint(tmp_path / "shard-0", first, {"shard": 0})
    for _attempt in range(2):
        last = train_layer_shard(
            shards[1], 1, 1, settings, [POINT], 32, 24 * 32, previous=tmp_path / "shard-0", chain=("m", "v"),
            tensorboard=logs,
        )  # fmt: skip
    curve = last[POINT.label].curve
    scalars = _scalars(run_directory(logs, "m", "v", POINT, 1))
    assert [step for step, _ in scalars["train/fvu"]] == [point["batches"] for point in curve] == [1, 2, 3, 4, 5, 6]
    for measure, tag in CURVE_TAGS.items():
        assert [value for _, value in scalars[tag]] == pytest.approx([point[measure] for point in curve], rel=1e-6)
    assert [value for _, value in scalars["train/tokens"]] == [point["tokens"] for point in curve]


def test_without_tracking_no_event_file_is_written(tmp_path, tiny_neox, token_ids, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shards = _shards(tmp_path, tiny_neox, token_ids)
    trainers = train_layer_shard(shards[0], 1, 0, _resumed_settings("adam", False), [POINT], 32, 24 * 32)
    assert isinstance(trainers[POINT.label], SaeTrainer)
    assert not list(tmp_path.rglob("events.out.tfevents.*"))
