// Drives the Node watchbot-progress library (npm @mapbox/watchbot-progress
// 1.1.8) for go run ./bench. Its published CLI does not start
// ("TypeError: meow is not a function"), so this calls the library the way
// bin/watchbot-progress.js would: client() from $ProgressTable, with
// $DynamoDbEndpoint pointing at dynalite.
//
//   node wbp.js set-total JOB TOTAL
//   node wbp.js complete-part JOB PART        one completion, as one CLI call per part
//   node wbp.js set-pending JOB TOTAL FIRST
//        a TOTAL-part job whose parts FIRST..TOTAL are still pending, written
//        with the library's own item layout (the state the library leaves a
//        job in after completing parts 1..FIRST-1)
//   node wbp.js complete-many JOB FIRST COUNT CONCURRENCY [SECONDS]
//        completes parts FIRST..FIRST+COUNT-1 with CONCURRENCY completions in
//        flight in this one process, starting no new completion after SECONDS
//        (0: no limit), and prints {"completed":N,"seconds":S,"complete":B}
//        (S excludes Node's start-up).
'use strict';
const client = require('@mapbox/watchbot-progress/lib/progress');

function die(err) {
  console.error(err && err.stack ? err.stack : String(err));
  // Last line: what failed, for the harness's report.
  console.error(`wbp.js: ${(err && (err.code || err.name)) || 'Error'}: ${err && err.message ? err.message : String(err)}`);
  process.exit(1);
}

async function main() {
  const [cmd, job, a, b, c, d] = process.argv.slice(2);
  const progress = client();
  if (cmd === 'set-total') {
    await progress.setTotal(job, Number(a));
    return;
  }
  if (cmd === 'set-pending') {
    const total = Number(a), first = Number(b);
    const parts = [];
    for (let i = first; i <= total; i++) parts.push(i);
    const dyno = client.Dyno({ table: process.env.ProgressTable.split(':')[5].split('/')[1],
      region: process.env.ProgressTable.split(':')[3], endpoint: process.env.DynamoDbEndpoint });
    await new Promise((resolve, reject) => dyno.updateItem({
      Key: { id: job },
      ExpressionAttributeNames: { '#p': 'parts', '#t': 'total' },
      ExpressionAttributeValues: { ':p': client.Dyno.createSet(parts), ':t': total },
      UpdateExpression: 'set #p = :p, #t = :t',
    }, (err) => (err ? reject(err) : resolve())));
    return;
  }
  if (cmd === 'complete-part') {
    const complete = await progress.completePart(job, Number(a));
    console.log(JSON.stringify(complete));
    return;
  }
  if (cmd === 'complete-many') {
    const first = Number(a), count = Number(b), conc = Number(c);
    const limitNs = BigInt(Math.round(Number(d || 0) * 1e9));
    let next = first, done = 0, finished = false;
    const end = first + count;
    const start = process.hrtime.bigint();
    async function worker() {
      while (next < end) {
        if (limitNs > 0n && process.hrtime.bigint() - start >= limitNs) return;
        const p = next++;
        const complete = await progress.completePart(job, p);
        done++;
        if (complete) finished = true;
      }
    }
    const ws = [];
    for (let i = 0; i < conc; i++) ws.push(worker());
    await Promise.all(ws);
    const seconds = Number(process.hrtime.bigint() - start) / 1e9;
    console.log(JSON.stringify({ completed: done, seconds, complete: finished }));
    return;
  }
  die(`unknown command ${cmd}`);
}

main().catch(die);
