from sfu.keyframe import KeyframeRequestThrottle


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
