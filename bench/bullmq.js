// Drives a BullMQ flow (npm bullmq with ioredis) for go run ./bench: the
// Redis fan-in a Node user would reach for instead of wp's Redis store. One
// parent job with N children; the parent becomes ready when every child has
// completed.
//
//   node bullmq.js create PREFIX N
//        FlowProducer.add of a parent with N children; prints {"seconds":S}
//   node bullmq.js complete PREFIX N CONCURRENCY
//        a Worker with CONCURRENCY completes the N children (an empty
//        processor); prints {"completed":N,"seconds":S,"parentState":...}
//        once the parent has left waiting-children (S excludes start-up).
//
// The redis-server is $REDIS_HOST:$REDIS_PORT.
'use strict';
const { FlowProducer, Worker, Job } = require('bullmq');
const IORedis = require('ioredis');

function die(err) {
  console.error(err && err.stack ? err.stack : String(err));
  process.exit(1);
}

function connection() {
  return new IORedis({
    host: process.env.REDIS_HOST || '127.0.0.1',
    port: Number(process.env.REDIS_PORT || 6379),
    maxRetriesPerRequest: null,
  });
}

async function create(prefix, n) {
  const conn = connection();
  const flow = new FlowProducer({ connection: conn, prefix });
  const children = new Array(n);
  for (let i = 0; i < n; i++) {
    children[i] = { name: 'part', queueName: 'parts', data: { partid: i }, opts: { removeOnComplete: true } };
  }
  const start = process.hrtime.bigint();
  await flow.add({ name: 'reduce', queueName: 'reduce', data: {}, children });
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  await flow.close();
  conn.disconnect();
  console.log(JSON.stringify({ seconds }));
}

async function complete(prefix, n, concurrency) {
  const conn = connection();
  let done = 0;
  let start;
  const finished = new Promise((resolve) => {
    const worker = new Worker('parts', async () => {}, {
      connection: conn, prefix, concurrency, autorun: false,
    });
    worker.on('completed', () => {
      done++;
      if (done === n) resolve(worker);
    });
    worker.on('failed', (job, err) => die(err));
    worker.on('error', die);
    start = process.hrtime.bigint();
    worker.run().catch(die);
  });
  const worker = await finished;
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  await worker.close();
  // The parent is in 'waiting' once its last child completed.
  const reduceJobs = await new (require('bullmq').Queue)('reduce', { connection: conn, prefix }).getJobs(['waiting', 'waiting-children']);
  const states = await Promise.all(reduceJobs.map((j) => j.getState()));
  conn.disconnect();
  console.log(JSON.stringify({ completed: done, seconds, parentState: states.join(',') }));
}

async function main() {
  const [cmd, prefix, a, b] = process.argv.slice(2);
  if (cmd === 'create') return create(prefix, Number(a));
  if (cmd === 'complete') return complete(prefix, Number(a), Number(b));
  die(`unknown command ${cmd}`);
}

main().then(() => process.exit(0), die);
