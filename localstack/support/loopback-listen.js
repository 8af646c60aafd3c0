// Preloaded into kinesis-mock (node) via NODE_OPTIONS=--require by start.sh.
// kinesis-mock has no setting for its listen address and binds every interface
// (it passes 0.0.0.0); this makes a server started without a host or on a
// wildcard address listen on 127.0.0.1 instead (override with LOCAL_BIND_HOST).
'use strict';
const net = require('net');

const host = process.env.LOCAL_BIND_HOST || '127.0.0.1';
const originalListen = net.Server.prototype.listen;
const WILDCARDS = new Set(['0.0.0.0', '::', '::0', '']);
const isWildcard = (h) => h === undefined || h === null || WILDCARDS.has(h);

net.Server.prototype.listen = function listen(...args) {
  const first = args[0];
  if (typeof first === 'number' || (typeof first === 'string' && /^\d+$/.test(first))) {
    // listen(port[, host][, backlog][, callback]): insert the host when absent
    if (args.length === 1 || typeof args[1] === 'function' || typeof args[1] === 'number') {
      args.splice(1, 0, host);
    } else if (typeof args[1] === 'string' && isWildcard(args[1])) {
      args[1] = host;
    }
  } else if (first && typeof first === 'object' && !Array.isArray(first) &&
             first.port !== undefined && first.path === undefined && isWildcard(first.host)) {
    args[0] = { ...first, host };
  }
  return originalListen.apply(this, args);
};
