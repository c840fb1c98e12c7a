"""--track none|tensorboard|wandb: a missing package is one line naming its extra; the choice reaches the trainer
(and pool workers) through $REPLICATE_TRACK; wandb defaults to offline."""
import importlib.util

import pytest

from replicate.cli import choose_tracker
from replicate.errors import UserError
from replicate.runners.rl.trainer import _trackers


@pytest.mark.parametrize("track,extra", [("tensorboard", "track"), ("wandb", "wandb")])
def test_missing_tracker_names_its_extra(track, extra, monkeypatch):
    monkeypatch.setenv("REPLICATE_TRACK", "")
    if importlib.util.find_spec(track) is not None:
        pytest.skip(f"{track} is installed")
    with pytest.raises(UserError, match=rf"--track {track} needs {track}: pip install 'replicate-rl\[{extra}\]'"):
        choose_tracker(track)


def test_tracker_choice_reaches_the_trainer(monkeypatch):
    for name in ("REPLICATE_TRACK", "WANDB_MODE"):  # setenv first: teardown then restores them, whatever is set
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    choose_tracker("none")
    assert _trackers() is None
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object())  # as if wandb were installed
    choose_tracker("wandb")
    import os
    assert _trackers() == "wandb" and os.environ["WANDB_MODE"] == "offline"
