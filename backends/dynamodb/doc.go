// Package dynamodb is the DynamoDB progress store, registered as
// dynamodb://TABLE. Region, credentials and endpoint come from the AWS SDK's
// standard chain (AWS_REGION, AWS_PROFILE, AWS_ACCESS_KEY_ID, instance and
// task roles, AWS_ENDPOINT_URL_DYNAMODB / AWS_ENDPOINT_URL).
//
// # Tables
//
// It works on the tables watchbot already has: hash key "id" (S), no sort
// key, no index. CreateTable makes one (on-demand billing).
//
// # Layout of a job written by wp
//
// The predecessors keep every pending part id in one number set on the job
// item. That stops fitting near 105,000 parts, and as an UpdateItem is
// charged by the item's size (1 WCU per KB), a completion costs about 3 WCU
// at 1,000 parts and 400 at 100,000, all on one partition key. wp spreads the
// pending set over small items instead, so a completion costs one write unit
// whatever the job's size:
//
//	id = JOB            the job item (always under 1 KB plus the metadata):
//	                    wp N (the layout version, 2; the marker that tells
//	                    wp jobs from legacy ones), parts BOOL true (the
//	                    guard, see "Old workers" below), total N, shardSize
//	                    N (256), groupSize N (256), shards N (number of
//	                    shard items), extent N (most shard items ever
//	                    written under this id, for cleanup), groups NS
//	                    (pending group numbers; gone when the job is
//	                    done), metadata (the JSON converted to M, readable
//	                    by the legacy tools), created N (unix ms), error S
//	                    (present = failed), wpReduceSent BOOL, reduced
//	                    BOOL, claimToken S and claimExp N (reduce claim),
//	                    and while CreateJob or Delete runs: creating S
//	                    (writer token, or "deleting") and lease N (unix
//	                    ms).
//	id = JOB#sNNNNN     shard N: parts NS = the pending offsets 0..255 of
//	                    parts N*256 .. N*256+255; t N = time of the last
//	                    completion (unix ms).
//	id = JOB#gNNNNN     group N: left NS = the pending offsets 0..255 of
//	                    shards N*256 .. N*256+255; t N as above.
//
// Job ids cannot hold '#' (backends.ValidateJobID), so these ids never clash
// with a job's. A shard with all 256 offsets pending holds 10 one-digit, 90
// two-digit and 156 three-digit numbers: 10*2 + 90*2 + 156*3 = 668 bytes
// (a DynamoDB number takes 1 byte per 2 significant digits, plus 1), plus
// the id (at most 128 + 7 bytes), the names "id", "parts" and "t" (8 bytes)
// and t (8 bytes): at most about 820 bytes, under the 1 KB write unit. A
// group item is the same size. 512 offsets per shard would not fit in 1 KB.
//
// # Cost of a completion
//
// Complete makes one request in the common case: UpdateItem on the shard,
// "DELETE parts :p SET t = :now" on condition contains(parts, :p) and
// attribute_not_exists(f): 1 WCU, and no read. The completion that empties
// a shard (1 in 256) also deletes the shard from its group item (1 WCU), and
// the one that empties a group (1 in 65,536) deletes the group from the job
// item (the job item's size in KB, a few WCU). On average that is
// 1 + 1/256 + (job item KB)/65536, about 1.004 WCU per part, at 1,000 parts
// as at 1,000,000 (measured on dynalite with ReturnConsumedCapacity: 1.004
// to 1.005). No item takes every write: the job item is written once per
// 65,536 parts.
//
// Everything unusual makes that condition fail: a duplicate, an unknown job
// (no shard item), a part out of range (no such offset or shard), a legacy
// job (no shard items), a failed job (Fail marks every pending shard with
// f). Only then does Complete read the job item (strongly consistent, 1 RCU)
// to tell which, and for a duplicate the shard item. A refused conditional
// write still costs 1 WCU, so a duplicate costs 1 WCU and about 2 RCU, and a
// completion of a legacy job 1 WCU more than the legacy write itself.
//
// A job being written by CreateJob is invisible, but its shard items exist
// while it is written: a Complete reaching them then (it would need a map
// message of a job not yet created) records the part. If that CreateJob is
// abandoned and taken over, the rewrite erases it.
//
// # Why sets at every level, and no counter
//
// Without transactions (dynalite has no TransactWriteItems, and wp uses only
// single-item conditional writes) a counter of pending shards cannot be
// decremented exactly once: a process that dies between emptying a shard and
// decrementing leaves the job stuck, and retrying could decrement twice.
// Deleting a member from a set on condition that it is there is idempotent,
// so every level is a set: the caller whose conditional delete removed the
// last group is the one finisher. If a process dies after emptying a shard
// (or group) and before telling the level above, the next completion of any
// part of that shard that finds it empty for more than 10 seconds (its t)
// finishes the propagation; such a late repair reports Done but not
// Finisher, and the reduce is then sent through ClaimReduce as the contract
// provides for crashed finishers. The 10 second wait keeps a live finisher
// (which propagates within milliseconds) from being overtaken.
//
// # CreateJob
//
// CreateJob puts the job item in a "creating" state (invisible to every
// other method) on condition attribute_not_exists(id), writes the shard and
// group items with BatchWriteItem (25 items a call, 16 calls in flight,
// unprocessed items retried with exponential backoff), then removes the
// creating state on condition that it still holds its token. While it writes
// it renews a 60 second lease every 15 seconds. A later CreateJob of the same
// id finding a creating item whose lease ran out (the writer died or was
// interrupted; an interrupted writer gives up its lease at once) takes it
// over, deletes the leftovers beyond the new job's extent and writes the
// job again; one whose lease is live returns ErrExists.
//
// # Legacy jobs
//
// Items without the wp marker were written by the Node library
// (@mapbox/watchbot-progress: parts 1..N) or watchbot-progress-py (parts
// 0..N-1): one item, hash key id, parts NS of pending part ids, total N,
// error S, metadata M, reduceSent BOOL (the Node helper; the Python library
// instead sets metadata to {"reduce_message_sent": true}). wp reads them and
// completes their parts the way they do (DELETE parts :p on the job item),
// with the condition contains(parts, :p) that they lacked.
//
// Numbering. The two libraries write the same item, so which numbering a job
// has is told only by its pending set: part N pending means 1-based (Node),
// part 0 pending means 0-based (Python). Once both ends are gone nothing on
// the item tells. So wp records the numbering in wpFirstPart the first time
// it reads the set while it still tells (Peek, which wp run makes before
// every part; Status, List, Pending; and Complete, whose write returns the
// set as it was): one conditional write of the item's size, once per job,
// best effort (a read-only policy just leaves it for the next reader). A
// job that neither library nor wp can number any more (every end completed
// by the libraries before wp first saw it) accepts every id from 0 to N.
// That is safe: an id in 1..N-1 is a part under either numbering; 0 and N
// are then both no longer pending, so each is either a duplicate or not a
// part at all, and completing it records nothing. Its delivery of a
// finished job still finds the reduce unsent and sends it. Status reports
// such a job's FirstPart as 0, the smallest id it accepts.
//
// The reduce. ClaimReduce takes either library's flag as proof that the
// reduce of a legacy job was sent. MarkReduceSent records it the way the
// job's library reads it: reduceSent for the Node library, and, unless the
// job is known to be the Node library's, the Python library's
// metadata.reduce_message_sent, set inside the user's metadata map (SET
// metadata.reduce_message_sent) rather than replacing the map as the
// Python library does. A Python worker handed a duplicate after wp sent
// the reduce then sends none.
//
// # Old workers on wp jobs
//
// During a rolling deploy an old worker (the Python library's Part, the
// Node library's completePart) may be handed a message of a job wp created.
// Before layout 2, wp's job item had no parts set, which both libraries read
// as "every part done": the old worker sent a reduce at once and the Python
// one set metadata.reduce_message_sent, which wp took as proof and never
// sent the real reduce. Layout 2 makes them fail instead, for the price of
// one small attribute on the job item and nothing per completion:
//
//   - the job item's parts is BOOL true, not a number set, so the
//     libraries' completion (UpdateItem DELETE parts :p) fails with
//     ValidationException ("An operand in the update expression has an
//     incorrect data type"): the part is not completed, no reduce is sent,
//     the worker fails and the message is retried until a wp worker gets
//     it;
//   - their status calls fail on it too (Python: len(True) is a TypeError;
//     Node: true.values is undefined, a TypeError), rather than reporting
//     progress 1; the Python Part with fail_job_on reads the status first,
//     so it fails before running the user's code;
//   - wp records its own reduce as wpReduceSent and reads neither library's
//     flag on a wp job, so an old worker's flag can never stand in for the
//     real reduce.
//
// The shard and group items have no total, so the Python library's
// list_jobs, which reads every item of the table as a job, fails on them
// with KeyError: 'total'.
//
// Jobs of layout 1 (no guard, wp's reduce flag in reduceSent) are read and
// completed as before; their reduce flag is reduceSent or wpReduceSent, and
// the Python library's flag is ignored on them as on every wp job. The
// first wp command that reads one (Peek, Status, List) adds the guard to
// it (one write, once per job, best effort), so that old workers fail on
// it from then on too; it keeps wp 1.
//
// # Given-up parts, tolerance and retry
//
// Items and attributes of given-up parts:
//
//	shard JOB#sNNNNN    gu NS: the given-up offsets (a part is pending in
//	                    parts, given up in gu, complete in neither); r S
//	                    and rx N: a running wp retry's hold (token, expiry)
//	JOB#uNNNNNNNNNN     a given-up part's details: exitCode, signal,
//	                    receives, at (unix ms), stderr (at most 512 bytes):
//	                    under 1 KB
//	job item            wpGivenUp NS: the given-up parts (the index that
//	                    counts them); wpTolerance S ("3", "10%") and
//	                    wpTolLimit N (the most tolerated), wpTolFailed BOOL,
//	                    wpReduceOnFailure BOOL, wpDigest S (each only when
//	                    set, so a plain job's item is unchanged);
//	                    wpGivenUpMax N with a tolerance: the most ids
//	                    wpGivenUp may list (size.go)
//
// Each write is a single-item conditional write, so it happens at most
// once, and each step after it is idempotent:
//
//   - GiveUp: the shard write "DELETE parts :p ADD gu :p" on condition
//     contains(parts, :p) AND attribute_not_exists(f) ends the part exactly
//     once, against Complete (which deletes it from parts on the same
//     condition) and duplicates; then the details item (Put); then "ADD
//     wpGivenUp :p" on the job item, which returns the set: when it holds
//     more than wpTolLimit parts the job fails (error, wpTolFailed, the
//     pending shards marked f as Fail does); then, if the shard emptied,
//     Complete's propagation, so the call that ends the last part, Complete
//     or GiveUp, is the one finisher. Cost: 1 WCU for the shard, 1 for the
//     details, the job item's size in KB for the index: 3 WCU measured
//     (TestConsumedCapacity_GiveUp). A completion does not change: 1.004 WCU.
//   - The index is a set, never a counter: ADD and DELETE of a member are
//     idempotent, so a retried or repeated write cannot count twice. A part
//     is counted after its shard write and uncounted after its shard
//     changes back, so the index can only briefly lag the shards: a
//     process that dies between the two writes leaves a part given up but
//     uncounted (a later delivery of it, or a completion, counts it once
//     its shard has been still for repairAfter), or, after a conversion or
//     retry, counted but no longer given up (GivenUp lists only what the
//     shards hold as given up; the count stays one too high). It holds at
//     most wpGivenUpMax part ids, the room CreateJob finds under the 400 KB
//     item limit less 8 KiB kept for the writes that follow (100,302 ids of
//     a 1,000,000-part job without metadata, 49,098 with 200 KB of it:
//     TestGiveUp_IndexFull), far past any useful tolerance. The give-up
//     that finds it full ("ADD" on condition size < wpGivenUpMax, unless
//     the part is listed) fails the job, saying so, and the item has room
//     for that write.
//     Whatever write of a give-up fails after the shard's, the emptied
//     shard is still propagated, so the job can end.
//   - A later Complete of a given-up part fails the hot path's condition;
//     the rare path reads the shard and converts the part: "DELETE gu :p"
//     on condition contains(gu, :p) (exactly once, against a Retry or
//     another conversion), then "DELETE wpGivenUp :p" and the details
//     item. It waits while the part is given up on its shard but not yet
//     counted (its GiveUp is between its two writes), so the index never
//     keeps a part the conversion removed.
//   - Retry: the parts to move are those in the index. Each shard holding
//     some is held (r, rx, on condition that no live hold exists, in shard
//     order), which makes conversions of its parts wait; the held shards
//     are read, and the parts still in gu are the ones to move. Then the
//     job item gets their groups back (ADD groups) with the reduce state
//     cleared, each group its shards (ADD left), and only then each shard
//     its parts ("DELETE gu :P ADD parts :P REMOVE r, rx" on condition that
//     the hold is still this call's); then the index drops them and a job
//     failed by its tolerance now within it runs again (its shards'
//     f marks removed, then error on condition that the index is within the
//     limit). Every level is pending again before any moved part can end,
//     and every shard and group put back holds a part that is pending once
//     the moves are done, so the propagation of Complete still removes the
//     last group exactly once: one finisher, however Retry calls and late
//     completions interleave. A Retry that dies after putting the levels
//     back and before moving the parts leaves the job pending with nothing
//     pending in those shards: running wp retry again moves the parts (they
//     are still given up) and the job can end.
//   - ClaimReduce also succeeds for a failed job with wpReduceOnFailure.
//
// On a legacy item (the Node or Python library's) everything is on the one
// item: GiveUp is "DELETE parts :p ADD wpGivenUp :p, wpGivenUpV :1" on
// condition contains(parts, :p) AND attribute_not_exists(error); the
// libraries see the part as no longer pending. A legacy job has no
// tolerance, so its first give-up fails it (error, which both libraries
// read). Retry moves the parts back to parts and clears the error and the
// reduce flags in one write, on condition that wpGivenUpV (bumped by every
// change of wpGivenUp) is as read: atomic, however many parts.
//
// # Bounded waits
//
// Each request is tried at most 4 times, each attempt bounded by a 15 second
// HTTP timeout (5 seconds to connect), with at most 2 seconds between
// attempts: an unreachable endpoint fails a call within about a minute, a
// refused connection within a few seconds.
package dynamodb
