"""Loopback peers for the media-plane tests: WebRtcTransport clients that publish
hand-made VP8/Opus RTP packets (no codecs) and subscribers that keep what arrives."""

from __future__ import annotations

import asyncio

from aiortc.rtp import RtpPacket

from sfu import _aiortc_internals as internals
from sfu.rtp import parse_header
from sfu.transport import IdleTrack, WebRtcTransport

VP8_KEY = bytes([0x10, 0x00, 0x9D, 0x01, 0x2A]) + b"K" * 40   # S=1, PID=0, P=0
VP8_DELTA = bytes([0x10, 0x01]) + b"D" * 40                    # S=1, P=1


class ClientPublisher:
    def __init__(self):
        self.t = WebRtcTransport("client-pub")
        self.video = self.t.pc.addTransceiver(IdleTrack("video"), direction="sendonly")
        self.audio = self.t.pc.addTransceiver(IdleTrack("audio"), direction="sendonly")
        self.seq = {"video": 1000, "audio": 5000}

    async def offer(self):
        sdp = await self.t.create_offer()
        tracks = [{"mid": tr.mid, "kind": tr.kind, "source": "camera"} for tr in (self.video, self.audio)]
        return sdp, tracks

    def send(self, kind, payload, ts):
        tr = self.video if kind == "video" else self.audio
        p = RtpPacket(payload_type=internals.negotiated_codecs(tr)[0].payloadType,
                      sequence_number=self.seq[kind], timestamp=ts,
                      ssrc=internals.sender_ssrc(tr.sender))
        p.payload = payload
        self.seq[kind] += 1
        return self.t.send_rtp(p.serialize())


class ClientSubscriber:
    def __init__(self, participant):
        self.t = WebRtcTransport("client-sub")
        self.packets = []
        self.t.on_rtp = lambda data, arrival: self.packets.append(data)

        async def send_offer(sdp):
            answer = await self.t.accept_offer(sdp)
            await participant.answer(answer)

        participant.send_offer = send_offer

    def by_ssrc(self):
        out = {}
        for data in self.packets:
            h = parse_header(data)
            out.setdefault(h[4], []).append(h)
        return out


async def until(predicate, timeout=15):
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return True
        await asyncio.sleep(0.02)
    return predicate()


async def subscribed(room, identity, track_ids):
    """A participant whose consumers of ``track_ids`` are forwarding."""
    participant = room.join(identity)
    client = ClientSubscriber(participant)
    await room.subscribe(participant, track_ids)
    await asyncio.wait_for(client.t.connected.wait(), 20)
    assert await until(lambda: all(not c.state.paused for c in participant.consumers.values()))
    return participant, client


async def publish(room):
    client = ClientPublisher()
    participant = room.join("camera")
    sdp, tracks = await client.offer()
    answer, producers = await room.publish(participant, sdp, tracks)
    await client.t.accept_answer(answer)
    await asyncio.wait_for(client.t.connected.wait(), 20)
    return client, participant, {p.kind: p for p in producers}
