'use strict';
// Loaded into the real watchbot watcher with NODE_OPTIONS=--require THIS_FILE
// (sqs.go sets it). Two jobs:
//
// 1. DNS: the watcher's aws-sdk v2 sends each request to the queue URL's
//    host, http://sqs.REGION.localhost:PORT/..., and takes the region from
//    it. dns.lookup here answers "localhost" and every "*.localhost" name
//    with 127.0.0.1 (IPv4: the emulator listens on 127.0.0.1 only) and
//    passes every other name to the real lookup. Both callback forms
//    (lookup(name, cb) and lookup(name, options|family, cb)), options.all,
//    and dns.promises.lookup are covered.
//
// 2. Lifeline: when WP_TESTSERVERS_LIFELINE_FD names a file descriptor (the
//    read end of a pipe whose write end only the Go test binary holds), the
//    watcher's whole process group (it is started as a group leader, so
//    that is the watcher and every command it runs) is killed once that
//    pipe closes: no watcher or command outlives the test binary, even when
//    the binary is killed. A separate descriptor rather than stdin because
//    the watcher hands its own stdin to each command it runs
//    (lib/worker.js: stdio [process.stdin, 'pipe', 'pipe']), and a command
//    that reads stdin must see what it sees in a container (end of file at
//    once), not a pipe that stays open for the whole test. The variable is
//    removed from the environment, so commands (and any node they run,
//    which loads this file too through NODE_OPTIONS) only get the DNS part.
const dns = require('dns');

const LOOPBACK = '127.0.0.1';

function isLocal(hostname) {
  if (typeof hostname !== 'string') return false;
  const name = hostname.toLowerCase().replace(/\.$/, '');
  return name === 'localhost' || name.endsWith('.localhost');
}

function wantsAll(options) {
  return options !== null && typeof options === 'object' && options.all === true;
}

const realLookup = dns.lookup;
dns.lookup = function lookup(hostname, options, callback) {
  if (!isLocal(hostname)) return realLookup.apply(this, arguments);
  if (typeof options === 'function') {
    callback = options;
    options = undefined;
  }
  if (typeof callback !== 'function') return realLookup.apply(this, arguments);
  if (wantsAll(options)) {
    process.nextTick(callback, null, [{ address: LOOPBACK, family: 4 }]);
  } else {
    process.nextTick(callback, null, LOOPBACK, 4);
  }
  return {};
};

if (dns.promises && typeof dns.promises.lookup === 'function') {
  const realPromiseLookup = dns.promises.lookup;
  dns.promises.lookup = function lookup(hostname, options) {
    if (!isLocal(hostname)) return realPromiseLookup.apply(this, arguments);
    if (wantsAll(options)) return Promise.resolve([{ address: LOOPBACK, family: 4 }]);
    return Promise.resolve({ address: LOOPBACK, family: 4 });
  };
}

const lifelineFd = process.env.WP_TESTSERVERS_LIFELINE_FD;
delete process.env.WP_TESTSERVERS_LIFELINE_FD;
if (lifelineFd) {
  const net = require('net');
  const die = () => {
    try {
      process.kill(-process.pid, 'SIGKILL');
    } catch (_) {
      // Not a process group leader: end this process at least.
    }
    process.exit(1);
  };
  try {
    const lifeline = new net.Socket({ fd: Number(lifelineFd), readable: true, writable: false });
    lifeline.on('data', () => {});
    lifeline.on('end', die);
    lifeline.on('close', die);
    lifeline.on('error', die);
    // Does not by itself keep the watcher running: with
    // writableFilesystem=true it must still exit after its one message.
    lifeline.unref();
  } catch (err) {
    process.stderr.write(`watcher-shim: lifeline fd ${lifelineFd}: ${err.message}\n`);
    process.exit(1);
  }
}
