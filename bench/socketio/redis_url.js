// node-redis options for a REDIS_URL as QuickPe spells it: unix:///path/redis.sock[?db=N]
// (the embedded Redis) or redis://[user:password@]host:port[/N].

"use strict";

function redisOptions(url) {
  if (url.startsWith("unix://")) {
    const parsed = new URL(url);
    const database = Number(parsed.searchParams.get("db") || 0);
    return { socket: { path: decodeURIComponent(parsed.pathname) }, database };
  }
  return { url };
}

module.exports = { redisOptions };
