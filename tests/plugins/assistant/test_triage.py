"""Return triage: generated photos (same item / damaged / different item) compared with
the dispatch photos; stills from a live VP8 track; the suggestion posted, the still kept."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import stat

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plugins.assistant.errors import BadPhoto
from plugins.assistant.images import CLASSICAL, SHARED, compare, decode_picture, features
from plugins.assistant.triage import TriageRequest, TriageService, suggest
from signalling.errors import BadRequest, Forbidden, NotFound

from .test_captions import until
from .media import ITEMS, Conn, MediaContext, encode, item, publish_video, vp8_rtp

pytestmark = pytest.mark.timeout(60)

EXPECTED = {"same": "matches_dispatch", "damaged": "possible_damage", "different": "different_item"}


def pairs():
    """(kind of pair, dispatch photo, returned photo) for every item and seed."""
    for kind, seed in itertools.product(ITEMS, (1, 2)):
        dispatch = item(kind, seed)
        yield "same", dispatch, item(kind, seed + 10, shift=(4, -3), light=0.92)
        yield "damaged", dispatch, item(kind, seed + 20, shift=(2, 2), damage=True)
        for other in ITEMS:
            if other != kind:
                yield "different", dispatch, item(other, seed + 30)


LEARNED = "learned:efficientnet-lite0"


@pytest.mark.parametrize(("model", "method"), [(SHARED, LEARNED), (None, CLASSICAL)])
def test_the_suggestions_on_generated_pairs_and_their_similarity_order(model, method):
    """The learned embedding (the model from its package) and the classical fallback
    both suggest all 24 pairs right."""
    results = {"same": [], "damaged": [], "different": []}
    right = total = 0
    for kind, dispatch, returned in pairs():
        comparison = compare(features(decode_picture(encode(dispatch)), model),
                             features(decode_picture(encode(returned)), model))
        assert comparison.features == method and (comparison.learned is None) == (model is None)
        results[kind].append(comparison.similarity)
        right += suggest(comparison) == EXPECTED[kind]
        total += 1
    assert (right, total) == (24, 24)
    assert min(results["same"]) > max(results["different"])
    assert sum(results["same"]) / 6 > sum(results["damaged"]) / 6 > sum(results["different"]) / 12


def test_the_learned_similarity_alone_tells_an_intact_item_from_a_changed_one():
    found = {"same": [], "damaged": [], "different": []}
    for kind, dispatch, returned in pairs():
        found[kind].append(compare(features(decode_picture(encode(dispatch))),
                                   features(decode_picture(encode(returned)))).similarity)
    assert min(found["same"]) > 0.85 > max(found["damaged"] + found["different"])


def test_pictures_compared_by_two_methods_fall_back_to_the_classical_one():
    picture = decode_picture(encode(item("box", 1)))
    comparison = compare(features(picture), features(picture, None))
    assert (comparison.features, comparison.learned) == (CLASSICAL, None)
    assert "learned" not in comparison.evidence() and comparison.evidence()["features"] == CLASSICAL


def test_no_dispatch_photo_is_said_as_such():
    assert suggest(None) == "no_dispatch_photos"


def test_what_is_not_a_picture_is_refused():
    with pytest.raises(BadPhoto, match="cannot be decoded"):
        decode_picture(b"not a picture at all")


@given(st.dictionaries(st.sampled_from(["room", "shipment_id", "track_id", "participant_id", "photo"]),
                       st.one_of(st.none(), st.text(max_size=12), st.integers(), st.booleans())))
def test_a_triage_request_is_parsed_or_refused_by_name(fields):
    try:
        parsed = TriageRequest.parse(fields, 1000)
    except (BadRequest, BadPhoto) as exc:
        assert "assistant.triage" in str(exc)
    else:
        assert parsed.room and (parsed.photo is None or 0 < len(parsed.photo) <= 1000)


def test_a_photo_over_the_limit_is_refused_before_decoding():
    big = base64.b64encode(b"x" * 2000).decode()
    with pytest.raises(BadPhoto, match="larger than 1000"):
        TriageRequest.parse({"room": "r", "photo": big}, 1000)


@pytest.fixture
def triage(tmp_path):
    ctx = MediaContext(tmp_path / "data")
    ctx.open_room("dock-1", "S-1")
    service = TriageService("assistant")
    service.start(ctx)
    photos = ctx.data_dir / "dispatch-photos" / "S-1"
    photos.mkdir(parents=True)
    (photos / "front.jpg").write_bytes(encode(item("shoe", 1)))
    (photos / "other-side.png").write_bytes(encode(item("box", 1), "PNG"))
    return ctx, service


async def test_a_photo_is_compared_stored_and_the_suggestion_posted(triage):
    ctx, service = triage
    photo = encode(item("shoe", 5, shift=(3, 1)))
    reply = await service.on_request(Conn(), {"room": "dock-1", "photo": base64.b64encode(photo).decode()})
    [message] = [m for m in ctx.messages if m.topic == "assistant.triage"]
    assert message.sender == "assistant" and reply["seq"] == message.seq
    payload = message.payload
    assert (payload["shipment_id"], payload["suggestion"]) == ("S-1", "matches_dispatch")
    evidence = payload["evidence"]
    assert evidence["best_photo"] == "front.jpg" and len(evidence["photos"]) == 2
    assert payload["similarity"] == max(p["similarity"] for p in evidence["photos"])
    assert "not a verdict" in evidence["note"]
    assert evidence["features"] == LEARNED and "efficientnet-lite0 embeddings" in evidence["method"]
    assert all(p["features"] == LEARNED and 0 < p["learned"] <= 1 for p in evidence["photos"])
    still = evidence["still"]
    assert still["sha256"] == hashlib.sha256(photo).hexdigest() and still["source"] == "photo"
    path = ctx.data_dir / still["file"]
    assert path.read_bytes() == photo and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


async def test_without_the_model_the_classical_features_decide_and_say_so(triage):
    ctx, _ = triage
    service = TriageService("assistant", image_model=None)
    service.start(ctx)
    photo = base64.b64encode(encode(item("shoe", 5, shift=(3, 1)))).decode()
    reply = await service.on_request(Conn(), {"room": "dock-1", "photo": photo})
    assert reply["suggestion"] == "matches_dispatch"
    evidence = reply["evidence"]
    assert evidence["features"] == CLASSICAL and "no learned image model" in evidence["method"]
    assert all("learned" not in p for p in evidence["photos"])


async def test_a_still_is_taken_from_the_live_video(triage):
    ctx, service = triage
    publisher = ctx.publisher("dock-1", "warehouse")
    track = publish_video(publisher)
    task = asyncio.ensure_future(
        service.on_request(Conn(), {"room": "dock-1", "participant_id": publisher.participant.id}))
    await until(lambda: track.producer._taps)  # the still's tap is in place: now the keyframe
    for packet in vp8_rtp(item("shoe", 6, shift=(-2, 3))):
        track.send(packet)
    reply = await asyncio.wait_for(task, 20)
    assert reply["suggestion"] == "matches_dispatch"
    still = reply["evidence"]["still"]
    assert (still["source"], still["format"], still["track_id"]) == ("video", "png", track.id)
    assert (ctx.data_dir / still["file"]).read_bytes().startswith(b"\x89PNG")
    assert not track.producer._taps  # the still's tap is gone


async def test_nothing_to_compare_with_and_who_may_ask(triage):
    ctx, service = triage
    photo = base64.b64encode(encode(item("bottle", 1))).decode()
    reply = await service.on_request(Conn(), {"room": "dock-1", "shipment_id": "S-NONE", "photo": photo})
    assert (reply["suggestion"], reply["similarity"]) == ("no_dispatch_photos", None)
    assert reply["evidence"]["features"] is None
    with pytest.raises(Forbidden, match="whose shipment is"):
        await service.on_request(Conn("desk", "dock-1", record=True),
                                 {"room": "dock-1", "shipment_id": "S-2", "photo": photo})
    with pytest.raises(Forbidden, match="record or admin"):
        await service.on_request(Conn("buyer", "dock-1", message=True), {"room": "dock-1", "photo": photo})
    with pytest.raises(NotFound, match="no video track"):
        await service.on_request(Conn(), {"room": "dock-1"})
