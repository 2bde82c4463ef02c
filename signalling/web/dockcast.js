// Dockcast browser client: a plain ES module, no build step (docs/js-client.md).
//
//   import { DockcastClient } from "/web/dockcast.js";
//   const client = new DockcastClient("wss://node.example/ws", token, { autoSubscribe: true });
//   client.on("message", (m) => console.log(m.seq, m.topic, m.payload));
//   await client.connect();
//   await client.join("dock-7");
//   await client.publish(await navigator.mediaDevices.getUserMedia({ video: true, audio: true }));
//   await client.send("chat", { text: "hello" });
//
// The modules behind it, under dockcast/: session.js (connection, reconnect, resume,
// token refresh, acks), client.js (the operations), wire.js (one websocket: requests,
// rate-limit advice), inbox.js (message order and acks), media.js (the peer
// connections), backoff.js, events.js, token.js.

export { DockcastClient } from "./dockcast/client.js";
export { DockcastSession, DEFAULT_RATE_LIMIT_RETRIES, TRANSITIONS, failoverUrl } from "./dockcast/session.js";
export { DockcastError, SUBPROTOCOL } from "./dockcast/wire.js";
export { RECONNECT_DEFAULTS, reconnectPolicy, reconnectDelay } from "./dockcast/backoff.js";
export { MessageInbox } from "./dockcast/inbox.js";
export { tokenExpiry, newMsgId } from "./dockcast/token.js";
