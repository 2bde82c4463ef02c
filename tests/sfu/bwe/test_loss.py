from sfu.bandwidth import LossBasedEstimate


def test_grows_without_loss_up_to_the_maximum():
    e = LossBasedEstimate(maximum=2_000_000, start=1_000_000)
    values = [e.update(0) for _ in range(20)]
    assert values[0] == 1_080_000 and values[-1] == 2_000_000
    assert values == sorted(values)


def test_backs_off_under_heavy_loss_and_holds_in_between():
    e = LossBasedEstimate(maximum=2_000_000, minimum=100_000, start=1_000_000)
    assert e.update(64) == 875_000  # 25% loss: minus half of it
    assert e.update(13) == 875_000  # 5%: hold
    for _ in range(50):
        e.update(200)
    assert e.bitrate == 100_000
