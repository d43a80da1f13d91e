'use strict';
// Starts fauxqs 1.9.2 (an in-memory SNS/SQS emulator, pinned in the root
// package.json) through its package API, listening on 127.0.0.1 only.
//
//   node fauxqs.js REGION
//
// It listens on a port the kernel picks and prints exactly one line,
// "fauxqs listening on 127.0.0.1:PORT", once it accepts connections; the Go
// side (sqs.go) reads the port from that line, so no free-port race.
//
// fauxqs's own CLI (dist/cli.js, startFauxqs) always listens on 0.0.0.0;
// buildApp only builds the Fastify app, and we call listen ourselves.
// buildApp({host: "localhost"}) makes queue URLs
// http://sqs.REGION.localhost:PORT/000000000000/NAME, where PORT comes from
// the Host header of the CreateQueue request and REGION from its SigV4
// credential scope (falling back to defaultRegion). The watcher's aws-sdk v2
// takes its region from that host and sends every request to that URL.
//
// It exits when its standard input closes: the Go test binary holds the
// write end, so the emulator dies with the test binary even when the binary
// is killed and never runs Stop. Set WP_TEST_FAUXQS_LOG=1 to get Fastify's
// request log on stdout.
process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
process.stdin.resume();

const region = process.argv[2] || 'us-east-1';

(async () => {
  const { buildApp } = await import('fauxqs');
  const app = buildApp({
    host: 'localhost',
    defaultRegion: region,
    logger: process.env.WP_TEST_FAUXQS_LOG === '1',
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const { port } = app.server.address();
  process.stdout.write(`fauxqs listening on 127.0.0.1:${port}\n`);
})().catch((err) => {
  console.error(err && err.stack ? err.stack : err);
  process.exit(1);
});
