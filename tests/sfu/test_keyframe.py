from sfu.keyframe import KeyframeRequestThrottle, keyframe_repairs


def test_at_most_one_request_per_interval():
    t = KeyframeRequestThrottle(1.0)
    assert t.request(10.0)
    assert not t.request(10.2) and not t.request(10.9)
    assert t.pending and t.due(10.5) == 0.5
    assert t.request(11.0)
    assert not t.pending
    assert (t.sent, t.suppressed) == (2, 2)


def test_keyframe_arrival_cancels_pending():
    t = KeyframeRequestThrottle(1.0)
    t.request(0.0)
    t.request(0.5)
    t.satisfied()
    assert t.due(0.6) is None


def test_a_keyframe_repairs_only_a_loss_before_it():
    assert keyframe_repairs(lost_since=1.0, keyframe_at=1.2)
    assert not keyframe_repairs(lost_since=1.0, keyframe_at=0.9)  # the loss is after it
    assert not keyframe_repairs(lost_since=1.0, keyframe_at=float("-inf"))  # none yet
