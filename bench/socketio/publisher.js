// Emits a recorded QuickPe event pattern to Socket.IO rooms through Redis (bench only).
//
//   SIO_REDIS_URL=... SIO_REDIS_KEY=... node bench/socketio/publisher.js SCHEDULE.json RATE
//
// SCHEDULE.json is {"transfers": [[[user_id, frame], ...], ...]}: for each transfer that
// bench.ws_django recorded, the frames QuickPe's stream carried for it (the sender's and the
// recipient's, real payloads), with ids numbered per user by bench.ws. Transfer k starts at
// k / RATE seconds, as bench.ws_django's driver paces QuickPe's transfers; each of its frames
// gets "ts" (now, QuickPe's format: UTC, microseconds, "Z") and goes to the room "user:<id>"
// as the event "event" through @socket.io/redis-emitter: one PUBLISH per frame on Redis, which
// the server's Redis adapter hears, like QuickPe's doorbell crosses Redis to daphne.
// Prints one JSON line with what it emitted, per user.

"use strict";

const fs = require("node:fs");
const { performance } = require("node:perf_hooks");
const { setTimeout: sleep } = require("node:timers/promises");
const { Emitter } = require("@socket.io/redis-emitter");
const { createClient } = require("redis");
const { redisOptions } = require("./redis_url");

// performance.timeOrigin is the wall clock (in microseconds) when this process started, and
// performance.now() the monotonic time since: their sum is the wall clock with microseconds,
// which Date has not. The client subtracts it from its own time.time() (same machine).
function timestamp() {
  const ms = performance.timeOrigin + performance.now();
  const whole = Math.floor(ms);
  const micros = Math.floor((ms - whole) * 1000);
  return `${new Date(whole).toISOString().slice(0, -1)}${String(micros).padStart(3, "0")}Z`;
}

async function main(argv) {
  if (argv.length !== 2) {
    process.stderr.write("usage: node publisher.js SCHEDULE.json RATE\n");
    process.exit(2);
  }
  const transfers = JSON.parse(fs.readFileSync(argv[0], "utf8")).transfers;
  const rate = Number(argv[1]);
  const client = createClient(redisOptions(process.env.SIO_REDIS_URL));
  await client.connect();
  const emitter = new Emitter(client, { key: process.env.SIO_REDIS_KEY });

  const emittedByUser = {};
  let emitted = 0;
  let late = 0;
  const cpu0 = process.cpuUsage();
  const start = performance.now() + 200;
  for (let number = 0; number < transfers.length; number += 1) {
    const delay = start + (number * 1000) / rate - performance.now();
    if (delay > 0) {
      await sleep(delay);
    } else if (delay < -50) {
      late += 1;
    }
    for (const [userId, frame] of transfers[number]) {
      frame.ts = timestamp();
      emitter.to(`user:${userId}`).emit("event", frame);
      emittedByUser[userId] = (emittedByUser[userId] || 0) + 1;
      emitted += 1;
    }
  }
  // Every PUBLISH answered: all of them are in Redis's hands.
  await client.ping();
  const elapsed = (performance.now() - start) / 1000;
  const cpu = process.cpuUsage(cpu0);
  await client.quit();
  process.stdout.write(
    `${JSON.stringify({
      transfers: transfers.length,
      emitted,
      rate_target: rate,
      rate_achieved: elapsed > 0 ? Math.round((transfers.length / elapsed) * 100) / 100 : 0,
      elapsed_s: Math.round(elapsed * 100) / 100,
      late_starts: late,
      cpu_s: Math.round((cpu.user + cpu.system) / 1000) / 1000,
      emitted_by_user: emittedByUser,
    })}\n`,
  );
}

main(process.argv.slice(2)).catch((error) => {
  process.stderr.write(`${error.stack || error}\n`);
  process.exit(1);
});
