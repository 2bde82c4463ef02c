from types import SimpleNamespace

from aiortc.rtp import RtpPacket

from sfu.demux import RtpDemuxer


def producer(mid, pt):
    return SimpleNamespace(mid=mid, codec=SimpleNamespace(payload_type=pt), ssrcs=set())


def rtp(ssrc, pt, mid=None):
    p = RtpPacket(payload_type=pt, sequence_number=1, timestamp=1, ssrc=ssrc)
    p.payload = b"x"
    if mid is None:
        return p.serialize()
    from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
    from aiortc.rtp import HeaderExtensionsMap
    m = HeaderExtensionsMap()
    m.configure(RTCRtpParameters(headerExtensions=[
        RTCRtpHeaderExtensionParameters(id=4, uri="urn:ietf:params:rtp-hdrext:sdes:mid")]))
    p.extensions.mid = mid
    return p.serialize(m)


def test_route_by_declared_ssrc_then_mid_then_payload_type():
    d = RtpDemuxer()
    video, audio = producer("1", 96), producer("0", 111)
    d.add(video, (1000,))
    d.add(audio)
    d.mid_ext_id = 4
    assert d.route(rtp(1000, 96), 1000, 96) is video
    assert d.route(rtp(2000, 111, mid="0"), 2000, 111) is audio
    assert d.by_ssrc[2000] is audio and 2000 in audio.ssrcs
    assert d.route(rtp(3000, 111), 3000, 111) is audio  # by payload type, webrtcbin style


def test_rtx_by_mid_is_not_learned_and_unknown_is_counted():
    d = RtpDemuxer()
    video = producer("1", 96)
    d.add(video)
    d.mid_ext_id = 4
    assert d.route(rtp(5000, 97, mid="1"), 5000, 97) is video
    assert 5000 not in d.by_ssrc
    assert d.route(rtp(6000, 50), 6000, 50) is None
    assert d.unroutable == 1
    d.remove(video)
    assert d.route(rtp(5000, 96, mid="1"), 5000, 96) is None
