"""CPU per datagram on each side of a trunk (docs/relay.md quotes what this prints).

Two processes on 127.0.0.1: node A serves one VP8 producer (fed like a LocalPublisher),
node B subscribes to it over a trunk with no consumer behind it. A sends ``--packets``
RTP packets of ``--size`` bytes in bursts of ``--burst`` every ``--interval`` ms (a video
frame's packets arrive together); each process measures its own CPU time
(``time.process_time``) from the first packet to the last. For comparison it measures
the same packets through a producer without a trunk, and plain UDP datagrams of the
same size at the same pace between two uvloop processes (the floor of any transport
written this way: loop wakeups and syscalls).

    .venv/bin/python scripts/relay_cost.py [--packets 6000] [--size 1100]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import time

import uvloop


def rtp(seq: int, ts: int, size: int, keyframe: bool) -> bytes:
    from sfu.rtp import RtpPacket
    head = bytes([0x10, 0x00, 0x9D, 0x01, 0x2A]) if keyframe else bytes([0x10, 0x01])
    return RtpPacket(payload_type=96, sequence_number=seq & 0xFFFF, timestamp=ts, ssrc=0x1234,
                     marker=1, payload=head + b"v" * (size - 12 - len(head))).serialize()


def producer():
    from sfu.local import NullRtcpSink
    from sfu.producer import CodecInfo, Producer
    return Producer(participant_id="PA_cam", kind="video", mid="0",
                    codec=CodecInfo("video/VP8", 90000, 96), ext_ids={}, transport=NullRtcpSink(),
                    rtcp_ssrc=1, producer_id="TR_cam")


def packets(args) -> list[bytes]:
    return [rtp(i, (i // args.burst) * 3000, args.size, i % 300 == 0) for i in range(args.packets)]


def run_a(args, pipe) -> None:
    async def main() -> None:
        from sfu.relay import TrunkServer
        from sfu.relay.certs import TrunkCertificate
        from sfu.rtp import parse_header
        a, b_fingerprint = TrunkCertificate.generate("A"), pipe.recv()
        track = producer()
        server = await TrunkServer("127.0.0.1", 0, a.certificate, a.private_key,
                                   {b_fingerprint: "B"}.get, node_id="A",
                                   find_producer=lambda room, track_id: track).start()
        pipe.send((server.port, a.fingerprint))
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, pipe.recv)  # B subscribed (the loop serves B meanwhile)
        data = packets(args)
        headers = [parse_header(d) for d in data]
        start = time.process_time()
        for i in range(0, len(data), args.burst):
            for d, h in zip(data[i:i + args.burst], headers[i:i + args.burst]):
                track.receive_rtp(d, h[0], h[2], h[3], h[4], h[5], h[6])
            await asyncio.sleep(args.interval / 1000)
        await asyncio.sleep(0.05)  # the last transmit
        spent = time.process_time() - start
        trunk = server.trunks["B"]
        # the same packets through a producer with no trunk: what is not the trunk's
        bare, start = producer(), time.process_time()
        for d, h in zip(data, headers):
            bare.receive_rtp(d, h[0], h[2], h[3], h[4], h[5], h[6])
        pipe.send((spent, time.process_time() - start, trunk.metrics.as_dict()))
        await loop.run_in_executor(None, pipe.recv)
        server.close()

    uvloop.run(main())


def run_b(args, pipe) -> None:
    async def main() -> None:
        from sfu.relay import connect_trunk
        from sfu.relay.certs import TrunkCertificate
        b = TrunkCertificate.generate("B")
        pipe.send(b.fingerprint)
        port, a_fingerprint = pipe.recv()
        trunk = await connect_trunk("127.0.0.1", port, b.certificate, b.private_key, a_fingerprint,
                                    node_id="B")
        remote = await trunk.subscribe("room", "TR_cam")
        pipe.send("ready")
        while remote.packets == 0:
            await asyncio.sleep(0.001)
        start = time.process_time()
        deadline = time.monotonic() + args.packets * args.interval / args.burst / 1000 + 10
        while remote.packets < args.packets and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        pipe.send((time.process_time() - start, remote.packets, trunk.metrics.as_dict()))
        trunk.close()

    uvloop.run(main())


def run_udp_receiver(args, pipe) -> None:
    async def main() -> None:
        loop, done, count, started = asyncio.get_running_loop(), asyncio.Event(), [0], [0.0]

        class Receiver(asyncio.DatagramProtocol):
            def datagram_received(self, data, addr):
                count[0] += 1
                if count[0] == 1:
                    started[0] = time.process_time()
                if count[0] == args.packets:
                    done.set()

        udp, _ = await loop.create_datagram_endpoint(Receiver, local_addr=("127.0.0.1", 0))
        pipe.send(udp.get_extra_info("sockname")[1])
        try:
            await asyncio.wait_for(done.wait(), args.packets * args.interval / args.burst / 1000 + 10)
        except TimeoutError:
            pass
        pipe.send((time.process_time() - started[0], count[0]))
        udp.close()

    uvloop.run(main())


def udp_floor(args) -> tuple[float, float]:
    """CPU per datagram of plain UDP at the same pace: (sender, receiver)."""
    pipe, end = multiprocessing.Pipe()
    receiver = multiprocessing.Process(target=run_udp_receiver, args=(args, end))
    receiver.start()

    async def send() -> float:
        loop = asyncio.get_running_loop()
        udp, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol,
                                                     remote_addr=("127.0.0.1", pipe.recv()))
        data, start = b"u" * (args.size + 30), time.process_time()
        for _ in range(0, args.packets, args.burst):
            for _ in range(args.burst):
                udp.sendto(data)
            await asyncio.sleep(args.interval / 1000)
        udp.close()
        return time.process_time() - start

    sender = uvloop.run(send())
    receiver_cpu, received = pipe.recv()
    receiver.join()
    return sender / args.packets * 1e6, receiver_cpu / max(received, 1) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--packets", type=int, default=6000)
    parser.add_argument("--size", type=int, default=1100, help="RTP packet bytes")
    parser.add_argument("--burst", type=int, default=5)
    parser.add_argument("--interval", type=float, default=5.0, help="ms between bursts")
    args = parser.parse_args()
    a_pipe, a_end = multiprocessing.Pipe()
    b_pipe, b_end = multiprocessing.Pipe()
    a = multiprocessing.Process(target=run_a, args=(args, a_end))
    b = multiprocessing.Process(target=run_b, args=(args, b_end))
    a.start(), b.start()
    a_pipe.send(b_pipe.recv())          # B's fingerprint to A
    b_pipe.send(a_pipe.recv())          # A's port and fingerprint to B
    a_pipe.send(b_pipe.recv())          # B subscribed
    b_cpu, received, b_metrics = b_pipe.recv()
    a_cpu, bare_cpu, a_metrics = a_pipe.recv()
    a_pipe.send("done")
    a.join(), b.join()
    n = args.packets
    print(f"{n} packets of {args.size} bytes, {args.burst} every {args.interval:g} ms; "
          f"B received {received} ({a_metrics['dropped_congested']} dropped by congestion)")
    print(f"A (producer + export + QUIC send): {a_cpu / n * 1e6:.1f} us per packet; "
          f"the producer alone {bare_cpu / n * 1e6:.1f} us; the trunk's part "
          f"{(a_cpu - bare_cpu) / n * 1e6:.1f} us")
    print(f"B (QUIC receive + remote producer): {b_cpu / max(received, 1) * 1e6:.1f} us per packet")
    print("plain UDP at the same pace: sender {:.1f} us, receiver {:.1f} us per datagram"
          .format(*udp_floor(args)))
    print(f"A metrics {a_metrics}")
    print(f"B metrics {b_metrics}")


if __name__ == "__main__":
    main()
