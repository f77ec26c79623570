// Baseline relay for bench/relay.py and bench/idle.py: what a user would run instead of
// parley-relay. Node's socket.io 4 with @socket.io/redis-adapter, speaking the same events:
// a client connects with auth {room, name}; a room holds two members (a third is refused with
// connect_error {code: "room_full"}); each client event below is forwarded to the other member
// under its *_BC / received_message name, through Redis so the members may sit on two replicas.
//
//     node relay.js PORT REDIS_URL
//
// GET /healthz answers {"status":"ok"} once the adapter's Redis clients are connected.
// Same Engine.IO ping settings as parley-relay's defaults (25 s / 20 s), websocket or polling.
"use strict";

const http = require("node:http");
const { Server } = require("socket.io");
const { createAdapter } = require("@socket.io/redis-adapter");
const { createClient } = require("redis");

const FORWARD = {
  ELGAMAL_PK: "ELGAMAL_PK_BC",
  DEFF_HELLMAN_PK: "DEFF_HELLMAN_PK_BC",
  DIFF_HELLMAN_PK: "DIFF_HELLMAN_PK_BC",
  KEY_CONFIRM: "KEY_CONFIRM_BC",
  message: "received_message",
};
const ROOM_RE = /^[A-Za-z0-9._-]{1,64}$/;
const MEMBERS_PER_ROOM = 2;

async function main() {
  const port = Number(process.argv[2]);
  const redisUrl = process.argv[3];
  if (!port || !redisUrl) {
    console.error("usage: node relay.js PORT REDIS_URL");
    process.exit(2);
  }
  const pub = createClient({ url: redisUrl });
  const sub = pub.duplicate();
  let ready = false;
  const httpServer = http.createServer((req, res) => {
    if (req.url === "/healthz") {
      res.writeHead(ready ? 200 : 503, { "Content-Type": "application/json" });
      res.end(ready ? '{"status":"ok"}' : '{"status":"down"}');
      return;
    }
    res.writeHead(404);
    res.end();
  });
  const io = new Server(httpServer, {
    pingInterval: 25000,
    pingTimeout: 20000,
    maxHttpBufferSize: 1e6,
    serveClient: false,
  });
  await Promise.all([pub.connect(), sub.connect()]);
  io.adapter(createAdapter(pub, sub));
  ready = true;

  io.use(async (socket, next) => {
    const auth = socket.handshake.auth || {};
    if (typeof auth.room !== "string" || !ROOM_RE.test(auth.room) || typeof auth.name !== "string") {
      const err = new Error("room and name are required");
      err.data = { code: "bad_auth", message: err.message };
      return next(err);
    }
    try {
      // Counts the room's members on every replica (the adapter asks the others over Redis).
      const members = await io.in(auth.room).fetchSockets();
      if (members.length >= MEMBERS_PER_ROOM) {
        const err = new Error("this room already has two members");
        err.data = { code: "room_full", message: err.message };
        return next(err);
      }
    } catch (exc) {
      const err = new Error("relay unavailable");
      err.data = { code: "unavailable", message: String(exc) };
      return next(err);
    }
    next();
  });

  io.on("connection", (socket) => {
    const room = socket.handshake.auth.room;
    socket.join(room);
    for (const [event, out] of Object.entries(FORWARD)) {
      socket.on(event, (data) => socket.to(room).emit(out, data));
    }
  });

  httpServer.listen(port, "127.0.0.1", () => {
    console.log(`node baseline relay listening on 127.0.0.1:${port}`);
  });
  for (const sig of ["SIGTERM", "SIGINT"]) {
    process.on(sig, () => process.exit(0));
  }
}

main().catch((exc) => {
  console.error(exc);
  process.exit(1);
});
