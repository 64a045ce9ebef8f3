"""The report's header says what the rounds after round 0 train on."""

from reseg.config import Config
from reseg.report import _setup_line


def _cfg(**rounds) -> dict:
    raw = {
        "data": {
            "scenes": [
                {"id": "a", "image": "a.tif", "labels": "a_l.tif"},
                {"id": "b", "image": "b.tif", "role": "unlabelled"},
            ],
            "classes": [{"name": "x"}, {"name": "y"}],
        },
        "model": {"name": "unet"},
        "rounds": {"count": 2, **rounds},
    }
    return Config.model_validate(raw).model_dump(mode="json")


def test_a_selection_run_describes_its_selection():
    line = _setup_line(_cfg(selection={"percent": 30}))
    assert "2 rounds after round 0, selection: top 30" in line
    assert "pseudo" not in line


def test_pseudo_label_rounds_do_not_describe_the_selection_they_replace():
    line = _setup_line(_cfg(pseudo={"percent": 20}))
    assert "pseudo-label rounds: per predicted class the top 20%" in line
    assert "selection" not in line
