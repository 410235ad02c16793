import pytest

from tfspawner.pullprogress import PullFailed, PullProgress


def feed(events):
    progress = PullProgress()
    for event in events:
        progress.update(event)
    return progress


def dl(layer, current, total):
    return {
        "id": layer,
        "status": "Downloading",
        "progressDetail": {"current": current, "total": total},
    }


@pytest.mark.parametrize(
    ("events", "percent"),
    [
        ([], 0),
        ([{"id": "tag", "status": "Pulling from x/y"}], 0),
        ([{"id": "a", "status": "Pulling fs layer"}, {"id": "b", "status": "Pulling fs layer"}], 0),
        ([{"id": "a", "status": "Pulling fs layer"}, dl("a", 50, 100)], 40),
        ([dl("a", 100, 100), dl("b", 0, 100)], 40),
        ([dl("a", 100, 100), {"id": "a", "status": "Pull complete"}, dl("b", 50, 100)], 70),
        ([{"id": "a", "status": "Already exists"}, {"id": "b", "status": "Already exists"}], 99),
        ([dl("a", 100, 100), {"status": "Digest: sha256:abc"}], 100),
        ([{"status": "Status: Downloaded newer image for x"}], 100),
    ],
)
def test_percent(events, percent):
    assert feed(events).percent == percent


def test_percent_never_goes_down_when_layers_complete():
    progress = PullProgress()
    seen = []
    for event in [
        {"id": "a", "status": "Pulling fs layer"},
        {"id": "b", "status": "Pulling fs layer"},
        dl("a", 10, 100),
        dl("a", 100, 100),
        {"id": "a", "status": "Download complete"},
        {"id": "a", "status": "Extracting", "progressDetail": {"current": 1, "total": 2}},
        {"id": "a", "status": "Pull complete"},
        dl("b", 100, 100),
        {"id": "b", "status": "Pull complete"},
        {"status": "Digest: sha256:abc"},
    ]:
        progress.update(event)
        seen.append(progress.percent)
    assert seen == sorted(seen)
    assert seen[-1] == 100


def test_error_event_raises():
    with pytest.raises(PullFailed, match="manifest unknown"):
        feed([{"error": "manifest unknown", "errorDetail": {"message": "manifest unknown"}}])
