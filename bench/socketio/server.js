// The Socket.IO reference server that bench.ws measures beside QuickPe's daphne (bench only).
//
//   SIO_PORT=... SIO_REDIS_URL=unix:///path/redis.sock SIO_REDIS_KEY=... SIO_JWT_KEY=... \
//     node bench/socketio/server.js
//
// One Node process, as the real-time design QuickPe comes from runs it: Socket.IO 4 with the
// Redis adapter on the same Redis as QuickPe, a handshake that verifies the HS256 access token
// QuickPe's clients present (same key) and joins the user's room "user:<id>". Events come from
// bench/socketio/publisher.js through Redis (the adapter's pub/sub), never from this process.
//
// The classic @socket.io/redis-adapter and not the sharded one: sharded pub/sub needs Redis 7
// (the embedded Redis is 6.2), and @socket.io/redis-emitter, the way a separate process
// publishes, speaks the classic adapter's channels. Not the streams adapter either: its
// connection-state recovery would replay missed events, which the reference this bench stands
// for (and the "replay while away" comparison) does not do.
//
// Only the WebSocket transport (the clients open it directly, as Socket.IO clients configured
// with transports: ["websocket"] do), no per-message compression (daphne has none either),
// and a ping every 50 s with 30 s to answer, the keep-alive daphne runs with here
// (quickpe.daphne_tuning.DAPHNE_OPTIONS), so both servers send the same keep-alive traffic.
// Prints one line {"listening": port} when it accepts connections.

"use strict";

const http = require("node:http");
const { Server } = require("socket.io");
const { createAdapter } = require("@socket.io/redis-adapter");
const { createClient } = require("redis");
const jwt = require("jsonwebtoken");
const { redisOptions } = require("./redis_url");

function required(name) {
  const value = process.env[name];
  if (!value) {
    process.stderr.write(`${name} must be set\n`);
    process.exit(2);
  }
  return value;
}

async function main() {
  const port = Number(required("SIO_PORT"));
  const key = required("SIO_JWT_KEY");
  const pub = createClient(redisOptions(required("SIO_REDIS_URL")));
  const sub = pub.duplicate();
  await Promise.all([pub.connect(), sub.connect()]);

  const httpServer = http.createServer();
  const io = new Server(httpServer, {
    transports: ["websocket"],
    serveClient: false,
    perMessageDeflate: false,
    pingInterval: 50_000,
    pingTimeout: 30_000,
    adapter: createAdapter(pub, sub, { key: required("SIO_REDIS_KEY") }),
  });

  // The same checks a QuickPe access token passes before its signature is trusted: HS256 only,
  // not expired, an access (not refresh) token. QuickPe also checks that the token's device
  // session is still active (a database read); this reference has no database.
  io.use((socket, next) => {
    const token = socket.handshake.auth && socket.handshake.auth.token;
    if (typeof token !== "string") {
      next(new Error("unauthorized"));
      return;
    }
    jwt.verify(token, key, { algorithms: ["HS256"] }, (error, claims) => {
      if (error || claims.token_type !== "access" || claims.user_id === undefined) {
        next(new Error("unauthorized"));
        return;
      }
      socket.data.userId = String(claims.user_id);
      next();
    });
  });

  io.on("connection", (socket) => {
    socket.join(`user:${socket.data.userId}`);
  });

  httpServer.listen(port, "127.0.0.1", () => {
    process.stdout.write(`${JSON.stringify({ listening: port })}\n`);
  });

  const stop = () => process.exit(0);
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

main().catch((error) => {
  process.stderr.write(`${error.stack || error}\n`);
  process.exit(1);
});
