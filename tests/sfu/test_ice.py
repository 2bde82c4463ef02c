import aioice.ice

from sfu import _aiortc_internals as internals, ice

SDP = "\r\n".join([
    "v=0", "m=video 9 UDP/TLS/RTP/SAVPF 96",
    "a=candidate:1 1 udp 2122194687 127.0.0.1 38576 typ host",
    "a=candidate:2 1 udp 2122063615 192.0.2.2 44194 typ host",
    "a=candidate:3 1 udp 2122267903 ::1 39495 typ host",
    "a=candidate:4 1 udp 2122267903 abcd.local 39495 typ host",
    "a=mid:0", ""])


def test_loopback_node_pairs_only_with_loopback(loopback_ice):
    assert aioice.ice.get_host_addresses(True, True) == ["127.0.0.1"]
    kept = ice.filter_sdp_candidates(SDP)
    assert "127.0.0.1 38576" in kept and "::1 39495" in kept
    assert "192.0.2.2" not in kept and ".local" not in kept
    assert "a=mid:0" in kept
    assert not ice.candidate_allowed("candidate:garbage")


def test_default_policy_keeps_everything():
    try:
        ice.use_host_addresses(None)
        assert aioice.ice.get_host_addresses is internals._original_get_host_addresses
        assert ice.filter_sdp_candidates(SDP).count("a=candidate") == 4
    finally:
        ice.use_host_addresses(["127.0.0.1"])


def test_no_public_ice_server_by_default():
    assert ice.rtc_configuration().iceServers == []
    assert [s.urls for s in ice.rtc_configuration(["stun:127.0.0.1:3478"]).iceServers] == ["stun:127.0.0.1:3478"]
