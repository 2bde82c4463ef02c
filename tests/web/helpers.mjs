// Helpers of the JS client's tests: tokens, a TCP proxy to cut connections, a fake
// server for malformed frames, and the node's message cursors read from its database.
//
// test_js_client.py starts the node(s) and runs `node --test` with, in the environment:
// DOCKCAST_URL (a node), DOCKCAST_RATE_URL (a node with a small request burst),
// DOCKCAST_API_KEY, DOCKCAST_API_SECRET, DOCKCAST_DATA_DIR (the first node's), DOCKCAST_PYTHON.

import { createHmac, randomBytes, createHash } from "node:crypto";
import { execFileSync } from "node:child_process";
import net from "node:net";
import http from "node:http";
import { DockcastClient } from "../../signalling/web/dockcast.js";

export const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run these tests through tests/web/test_js_client.py`);
  return value;
};

const b64url = (data) => Buffer.from(data).toString("base64url");

/**
 * An access token signed with the node's secret (HS256), as `dockcast token` mints one.
 * @param {string} identity
 * @param {{room?: string | null, grants?: string[], ttl?: number}} [options]
 */
export function mint(identity, { room = null, grants = ["publish", "subscribe", "message"], ttl = 600 } = {}) {
  const now = Math.floor(Date.now() / 1000);
  const claims = { iss: env("DOCKCAST_API_KEY"), sub: identity, iat: now, nbf: now, exp: now + ttl,
    grants: Object.fromEntries(grants.map((g) => [g, true])) };
  if (room !== null) claims.room = room;
  const body = `${b64url(JSON.stringify({ alg: "HS256", typ: "JWT" }))}.${b64url(JSON.stringify(claims))}`;
  return `${body}.${createHmac("sha256", env("DOCKCAST_API_SECRET")).update(body).digest("base64url")}`;
}

/** A room name no other test uses. */
export const uniqueRoom = (prefix = "js") => `${prefix}-${randomBytes(4).toString("hex")}`;

/**
 * A client of `identity` in `room` (connected, not joined), closed by `t.after`.
 * @param {import("node:test").TestContext} t
 */
export async function connected(t, identity, room, options = {}, url = env("DOCKCAST_URL")) {
  const client = new DockcastClient(url, mint(identity, { room, ...(options.token || {}) }),
    { pingIntervalMs: 0, ...options, token: undefined });
  t.after(() => client.close());
  await client.connect();
  return client;
}

/** Wait until `check()` is truthy (polling, bounded): for state only a poll can see. */
export async function until(check, what, timeoutMs = 10000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The node's message cursor of `identity` in `room` (signalling.messages.sqlite), or null. */
export function cursorOf(room, identity) {
  const script = "import sqlite3, sys; c = sqlite3.connect(f'file:{sys.argv[1]}/messages.db?mode=ro', uri=True); "
    + "r = c.execute('SELECT seq FROM cursors WHERE room = ? AND member = ?', sys.argv[2:4]).fetchone(); "
    + "print(r[0] if r else 'none')";
  const out = execFileSync(env("DOCKCAST_PYTHON"), ["-c", script, env("DOCKCAST_DATA_DIR"), room, identity]).toString().trim();
  return out === "none" ? null : Number(out);
}

/**
 * A TCP proxy to the node: `cut()` destroys every connection through it at once (no
 * close frame: what a phone losing its network looks like), `refuse` makes it drop new
 * ones as they come (the node unreachable).
 */
export async function tcpProxy(targetUrl) {
  const target = new URL(targetUrl);
  const sockets = new Set();
  const proxy = { refuse: false, connections: 0 };
  const server = net.createServer((client) => {
    if (proxy.refuse) { client.destroy(); return; }
    proxy.connections++;
    const upstream = net.connect(Number(target.port), target.hostname);
    for (const [a, b] of [[client, upstream], [upstream, client]]) {
      sockets.add(a);
      a.on("data", (d) => b.write(d));
      a.on("close", () => { sockets.delete(a); b.destroy(); });
      a.on("error", () => {});
    }
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  proxy.url = `ws://127.0.0.1:${server.address().port}${target.pathname}`;
  proxy.cut = () => { for (const s of [...sockets]) s.destroy(); };
  proxy.close = () => { proxy.cut(); server.close(); };
  return proxy;
}

/** One websocket frame from the server (unmasked), text or binary. */
function frame(payload, opcode) {
  const body = Buffer.from(payload);
  const head = body.length < 126 ? Buffer.from([0x80 | opcode, body.length])
    : Buffer.from([0x80 | opcode, 126, body.length >> 8, body.length & 255]);
  return Buffer.concat([head, body]);
}

/** The text frames complete in a client's (masked) bytes, and the bytes left over. */
function clientFrames(buffer) {
  const texts = [];
  let offset = 0;
  while (offset + 2 <= buffer.length) {
    const opcode = buffer[offset] & 15;
    let length = buffer[offset + 1] & 127, at = offset + 2;
    if (length === 126) { if (at + 2 > buffer.length) break; length = buffer.readUInt16BE(at); at += 2; }
    if (length === 127) { if (at + 8 > buffer.length) break; length = Number(buffer.readBigUInt64BE(at)); at += 8; }
    if (at + 4 + length > buffer.length) break;
    const mask = buffer.subarray(at, at + 4); at += 4;
    const data = Buffer.from(buffer.subarray(at, at + length).map((b, i) => b ^ mask[i % 4]));
    offset = at + length;
    if (opcode === 1) texts.push(data.toString());
  }
  return { texts, rest: buffer.subarray(offset) };
}

/**
 * A websocket server that is not a node: `script(request, send)` is called for each
 * request the client sends, `send(text)` / `send(bytes, true)` writes a frame. For what
 * a real node never sends: malformed frames.
 */
export async function fakeServer(script) {
  const server = http.createServer();
  const sockets = new Set();
  server.on("upgrade", (req, socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    const accept = createHash("sha1").update(req.headers["sec-websocket-key"] + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest("base64");
    socket.write("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      + `Sec-WebSocket-Accept: ${accept}\r\nSec-WebSocket-Protocol: dockcast.v1.json\r\n\r\n`);
    const send = (data, binary = false) => socket.write(frame(data, binary ? 2 : 1));
    let pending = Buffer.alloc(0);
    socket.on("data", (chunk) => {
      const { texts, rest } = clientFrames(Buffer.concat([pending, chunk]));
      pending = Buffer.from(rest);
      for (const text of texts) script(JSON.parse(text), send);
    });
    socket.on("error", () => {});
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const close = () => { for (const socket of sockets) socket.destroy(); server.close(); };
  return { url: `ws://127.0.0.1:${server.address().port}/ws`, close };
}
