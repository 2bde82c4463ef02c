"""The README.md of an evidence bundle, for a reader who does not run Dockcast."""

from __future__ import annotations

import datetime
import textwrap

from plugins.recorder import Manifest

__all__ = ["bundle_readme"]


def _utc(ts: float | None) -> str:
    if ts is None:
        return "not recorded"
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _value(value) -> str:
    return "—" if value is None else f"`{value}`"


def _media_section(media: str | None, signed: bool) -> str:
    """The "Watching" section, as wrapped paragraphs."""
    return "\n\n".join(textwrap.fill(p, 88, break_on_hyphens=False, break_long_words=False) for p in _media_paragraphs(media, signed)) + "\n"


def _media_paragraphs(media: str | None, signed: bool) -> list[str]:
    if media is None:
        return ["There is no media file in this bundle (see \"Problems\" below). The segments "
                "can still be converted and played: see \"The segments\"."]
    text = [f"`{media}` plays in any common player (VLC, mpv, a web browser: drag it onto "
            "a tab). It was made from the segments by copying the encoded frames into the "
            "container, without decoding or re-encoding anything: what you see is what the "
            "cameras sent."]
    if media.endswith(".mp4"):
        text.append("It carries C2PA Content Credentials: any C2PA reader (for example "
                    "`c2patool " + media + "`, or https://contentcredentials.org/verify) checks "
                    "that the file was not changed since it was exported, and shows the "
                    "assertion `com.dockcast.evidence` (recording id, session id and the audit "
                    "log's last signed checkpoint). When the certificate was issued by the "
                    "node itself (the default) rather than by a certificate authority, readers "
                    "report it as untrusted (`signingCredential.untrusted`) unless you add the "
                    "node's C2PA CA certificate (ask the sender for it) to their trust list. A "
                    "hash mismatch (`assertion.bmffHash.mismatch`) means the file was changed."
                    if signed else
                    "It carries no C2PA manifest (it was exported without one).")
    else:
        text.append("WebM files carry no C2PA manifest. Their check is the audit log: the "
                    "segments they were made from are verified above.")
    return text


def bundle_readme(manifest: Manifest, bundle: str, session_id: str, media: str | None,
                  signed: bool, tool: dict[str, str], segments: int, problems: list[str]) -> str:
    """The README text: what the files are, how to check them, how to play the media."""
    f = manifest.fields
    rid = manifest.recording_id
    media_row = f"| `{media}` | the recording as one video file (see \"Watching\") |\n" if media else ""
    problem_text = "".join(f"- {p}\n" for p in problems) or "None.\n"
    return f"""# Evidence bundle: recording {rid}

This archive is the evidence of an inspection session recorded by a Dockcast node:
a video call between the parties of a shipment (for example a seller and a warehouse
checking a returned item). Everything in it can be checked without Dockcast.

| | |
|---|---|
| recording | `{rid}` |
| inspection session | `{session_id}` |
| room | {_value(f.get("room"))} |
| shipment | {_value(f.get("shipment_id"))} |
| recorded | {_utc(manifest.started_at)} to {_utc(manifest.stopped_at)} |
| exported by | {tool.get("name")} {tool.get("version")} |

## The files

| file | what it is |
|---|---|
| `README.md` | this text |
| `public-key.txt` | the node's public key, a copy for convenience (see below why not to trust it) |
| `verify.py` | the verifier: one Python file, to read and to run |
| `recording.json` | the recording's description: tracks, segment files, their SHA-256 hashes |
{media_row}| `audit/entries.jsonl` | the session's audit log: one JSON entry per line (joins, leaves, published tracks, a hash of every message, shipment events, the verdict, the SHA-256 of every recording segment) |
| `audit/checkpoints.jsonl` | checkpoints: the node's Ed25519 signature over the log's Merkle root (RFC 6962) at moments of the session |
| `segments/{rid}/...` | the recording itself ({segments} files): the packets as they arrived, in the Janus MJR format |

## Checking it

1. **Get the node's public key from the sender through another channel**: a message
   from an address you already know, a phone call, their website, the contract. Do not
   rely on `public-key.txt` alone: whoever could change the log and the video could also
   replace that file with a key of their own and sign everything again. The copy is
   there so you can compare it with the key you were given.
2. Install Python 3.8 or later and the `cryptography` package: `pip install cryptography`.
3. Take `verify.py` out of the archive (any unzip tool; `unzip {bundle} verify.py
   public-key.txt`), read it if you like, and run it on the archive itself:

   ```
   python3 verify.py {bundle} --public-key "KEY"
   ```

   with the key from step 1 in place of `KEY` (once you have compared them, the same as
   `--public-key "$(cat public-key.txt)"`). If the archive was renamed, use its name.
4. Exit status 0 and a summary: every entry, every checkpoint signature and every
   segment verifies. Exit status 1: something differs, and the first entry or file that
   differs is named. Exit status 2: the command or the key was mistyped, or the file is
   not an evidence bundle.

What the verifier checks: each line of the log is exactly what the node wrote and in
order; each checkpoint is signed by the key you gave and its Merkle root is recomputed
from the entries (so no entry was changed, removed, inserted or moved, and nothing was
cut off); each segment file has the size and SHA-256 the log recorded when the node
closed it. Entries written after the last checkpoint (after a crash) are not covered by
a signature and are reported. `verify.py` explains each step in its opening comment.

The media file is made from the segments, so it is not in the log itself. To be certain
it shows what the segments hold, convert the segments yourself (below) and compare,
or, for an MP4, check its C2PA manifest.

## Watching

{_media_section(media, signed)}
## The segments

Each `.mjr` file holds the RTP packets of one track (camera or microphone) for up to a
minute, as the node received them. `janus-pp-rec` (from the Janus WebRTC server,
Debian package `janus-tools`) converts one into a playable file, `.webm` for VP8 and
VP9, `.mp4` for H.264, `.opus` for Opus (`recording.json` gives each track's codec):

```
janus-pp-rec segments/{rid}/<file>.mjr out.webm
```

## Problems

{problem_text}"""
