"""The fan-out loop: one inbound packet to N consumers (rewrite, SRTP protect, send)."""

from __future__ import annotations

import socket

import pylibsrtp
import pytest

from .conftest import rtp_packet

PACKET = rtp_packet()
EXT_MAP = bytes([0, 5, 7] + [0] * 253)


def _protect():
    policy = pylibsrtp.Policy(key=bytes(range(30)), ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
    policy.allow_repeat_tx = True  # the benchmark sends the same sequence numbers again
    return pylibsrtp.Session(policy).protect


def _states(forward, n: int, sendto, addr) -> list:
    states = []
    for i in range(n):
        state = forward.ConsumerState(0x1000 + i, 100, EXT_MAP, 7, True)
        state.bind(_protect(), sendto, addr)
        state.paused = False
        states.append(state)
    return states


@pytest.mark.parametrize("consumers", [1, 10, 100])
def test_fan_out_without_the_socket(benchmark, forward, consumers):
    """Rewrite and protect per consumer; the send is a no-op (the loop's own cost)."""
    states = _states(forward, consumers, lambda data, addr: None, None)
    sent = benchmark(forward.fan_out, states, PACKET, 1000, 90000, len(PACKET) - 24, True, 0)
    assert sent == consumers


@pytest.mark.parametrize("consumers", [10])
def test_fan_out_to_a_udp_socket(benchmark, forward, consumers):
    """The same with one real sendto per consumer, to a loopback socket we own."""
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    out.setblocking(False)

    def sendto(data, addr):
        try:
            out.sendto(data, addr)
        except BlockingIOError:
            pass

    try:
        states = _states(forward, consumers, sendto, sink.getsockname())
        benchmark(forward.fan_out, states, PACKET, 1000, 90000, len(PACKET) - 24, True, 0)
    finally:
        out.close()
        sink.close()


def test_nack_cache(benchmark, forward):
    cache = forward.NackCache(1024)

    def step():
        for seq in range(64):
            cache.put(seq, PACKET)
        return cache.get(10)

    assert benchmark(step) == PACKET
