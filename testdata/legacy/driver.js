// Drives the Node library @mapbox/watchbot-progress 1.1.8 (from npm, pinned
// in package.json) for wp's mixed-fleet tests (backends/dynamodb/fleet_test.go).
// Usage: node driver.js OP ARGS...
//
// Environment: ProgressTable (a table ARN) and WorkTopic as watchbot sets
// them, DynamoDbEndpoint (the library's own endpoint setting),
// WP_TEST_SNS_ENDPOINT for the reduce this worker publishes, AWS_REGION and
// the fake credentials.
//
// Prints one JSON line: the call's result, or {"error": NAME, "message": ...}
// with exit status 1 when the call rejected. A call that throws outside its
// promise (the library's status on an item it cannot read) ends the process
// with Node's uncaught-exception exit status, 1.
'use strict';
const path = require('path');
const root = path.join(__dirname, '..', '..', 'node_modules');
const AWS = require(path.join(root, 'aws-sdk'));
const progress = require(path.join(root, '@mapbox', 'watchbot-progress')).progress();

function publishReduce(id) {
  const topic = process.env.WorkTopic;
  const sns = new AWS.SNS({ region: topic.split(':')[3], endpoint: process.env.WP_TEST_SNS_ENDPOINT });
  return sns.publish({ TopicArn: topic, Subject: 'reduce', Message: JSON.stringify({ id: id }) }).promise();
}

const ops = {
  // settotal JOBID N
  settotal: (id, n) => progress.setTotal(id, Number(n)).then(() => null),
  // complete JOBID PART: completePart alone (a worker that dies before its reduce)
  complete: (id, part) => progress.completePart(id, Number(part)),
  status: (id, part) => (part === undefined ? progress.status(id) : progress.status(id, Number(part))),
  fail: (id, reason) => progress.failJob(id, reason).then(() => null),
  'reduce-sent': (id) => progress.reduceSent(id).then(() => null),
  'set-metadata': (id, json) => progress.setMetadata(id, JSON.parse(json)).then(() => null),
  // part JOBID PART [helper]: the map worker of the library's examples.md:
  // status (skip a failed job), the work (prints "ran" on stderr),
  // completePart, and a reduce when it says the job is complete. With
  // "helper" it also uses the opt-in reduceSent flag: no reduce when the
  // status says one was sent, and the flag set after sending one.
  part: (id, part, helper) =>
    progress.status(id).then((status) => {
      if (status.failed) return { skipped: true };
      process.stderr.write('ran\n');
      return progress.completePart(id, Number(part)).then((complete) => {
        if (!complete) return { reduce: false };
        const check = helper ? progress.status(id) : Promise.resolve({});
        return check.then((s) => {
          if (s.reduceSent) return { reduce: false };
          return publishReduce(id)
            .then(() => (helper ? progress.reduceSent(id) : null))
            .then(() => ({ reduce: true }));
        });
      });
    }),
};

const [op, ...args] = process.argv.slice(2);
if (!ops[op]) {
  console.error('unknown op ' + op);
  process.exit(2);
}
ops[op](...args).then(
  (out) => console.log(JSON.stringify(out === undefined ? null : out)),
  (err) => {
    console.log(JSON.stringify({ error: err.code || err.name, message: err.message }));
    process.exit(1);
  }
);
