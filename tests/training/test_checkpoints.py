"""Resuming only from a checkpoint that was saved whole: a training process
killed while saving leaves a folder without (or with half of) its state."""

import json
import os

from trainers.hf_callback import last_checkpoint


def _checkpoint(root, step: int, state: str | None, extra: tuple[str, ...] = ()) -> str:
    folder = os.path.join(root, f"checkpoint-{step}")
    os.makedirs(folder)
    open(os.path.join(folder, "model.safetensors"), "wb").close()
    if state is not None:
        with open(os.path.join(folder, "trainer_state.json"), "w") as out:
            out.write(state)
    for name in extra:
        open(os.path.join(folder, name), "w").close()
    return folder


def test_the_newest_whole_checkpoint_is_chosen_and_cut_short_ones_removed(tmp_path):
    root = str(tmp_path)
    whole = _checkpoint(root, 5, json.dumps({"global_step": 5}))
    no_state = _checkpoint(root, 10, None)
    half_state = _checkpoint(root, 15, '{"global_step": 1')
    assert last_checkpoint(root) == whole
    assert not os.path.exists(no_state) and not os.path.exists(half_state)


def test_a_checkpoint_missing_a_required_file_is_not_resumed_from(tmp_path):
    root = str(tmp_path)
    complete = _checkpoint(root, 2, "{}", extra=("epoch_stats.json",))
    without_stats = _checkpoint(root, 4, "{}")
    assert last_checkpoint(root, required=("epoch_stats.json",)) == complete
    assert not os.path.exists(without_stats)
    assert last_checkpoint(str(tmp_path / "none")) is None
