// Package dynamodb is the DynamoDB progress store, registered as
// dynamodb://TABLE. Region, credentials and endpoint come from the AWS SDK's
// standard chain (AWS_REGION, AWS_PROFILE, AWS_ACCESS_KEY_ID, instance and
// task roles, AWS_ENDPOINT_URL_DYNAMODB / AWS_ENDPOINT_URL).
//
// # Tables
//
// It works on the tables watchbot already has: hash key "id" (S), no sort
// key, no index (watchbot's reduce mode provisions 30 read and 30 write
// units). CreateTable makes one (on-demand billing) with the wp-jobs index
// (see "Listing") and the time to live on wpExpires (see "Expiry");
// UpgradeTable gives both to a table made before, and puts the index keys
// on the jobs already in it. Everything below works on a table without
// them too: List then scans, and expired jobs are hidden but not reclaimed.
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
//	                    ms). Progress, expiry and listing (below): wpEnded
//	                    N, wpm<minute> N counters, wpExpires N, wpBatch N
//	                    and wpBatchBytes N (Job.Batch, BatchBytes, when
//	                    set), wpList S and wpListed N (the index keys).
//	id = JOB#sNNNNN     shard N: parts NS = the pending offsets 0..255 of
//	                    parts N*256 .. N*256+255; t N = when a part of it
//	                    last ended (unix ms); m<minute> N counters;
//	                    wpExpires N.
//	id = JOB#gNNNNN     group N: left NS = the pending offsets 0..255 of
//	                    shards N*256 .. N*256+255; t N as above; m<minute>
//	                    N counters; wpExpires N.
//
// Job ids cannot hold '#' (backends.ValidateJobID), so these ids never clash
// with a job's. A shard with all 256 offsets pending holds 10 one-digit, 90
// two-digit and 156 three-digit numbers: 10*2 + 90*2 + 156*3 = 668 bytes
// (a DynamoDB number takes 1 byte per 2 significant digits, plus 1), plus
// the id (at most 128 + 10 bytes), the names "id", "parts" and "t" (8 bytes)
// and t (8 bytes): about 820 bytes. The largest shard item wp can write adds
// to that the most counters a sweep leaves (10, of 12 bytes each), wpExpires
// (15), a wp retry's hold (r, rx: 47) and the failure mark f (2): 989 bytes
// (TestLayout_ShardWorstCase, 1 WCU by dynalite's own count), still under
// the 1 KB write unit. A group item is smaller. 512 offsets per shard would
// not fit in 1 KB.
//
// # Cost of a completion
//
// Complete makes one request in the common case: UpdateItem on the shard,
// "DELETE parts :p ADD m<minute> :1 SET t = :now REMOVE <the sweep>" on
// condition contains(parts, :p), attribute_not_exists(f), the item not
// expired and written within 30 minutes (see "Progress"), ReturnValues
// ALL_OLD: 1 WCU, and no read. The completion that empties a shard (1 in
// 256) also deletes the shard from its group item (1 WCU), and the one that
// empties a group (1 in 65,536) deletes the group from the job item (the
// job item's size in KB, a few WCU). On average that is
// 1 + 1/256 + (job item KB)/65536, about 1.004 WCU per part, at 1,000 parts
// as at 1,000,000 (measured on dynalite with ReturnConsumedCapacity: 1.0042
// at 5,000 parts, 1.0038 at 1,000,000). No item takes every write: the job
// item is written once per 65,536 parts.
//
// Everything unusual makes that condition fail: a duplicate, an unknown or
// expired job (no shard item, or wpExpires past), a part out of range (no
// such offset or shard), a legacy job (no shard items), a failed job (Fail
// marks every pending shard with f), a shard idle for 30 minutes. Only then
// does Complete read the job item (strongly consistent, 1 RCU) to tell
// which, and the shard item. A refused conditional write still costs 1 WCU,
// so a duplicate costs 1 WCU and about 2 RCU, a completion in a shard idle
// for 30 minutes 2 WCU and 2 RCU, and a completion of a legacy job 1 WCU
// more than the legacy write itself.
//
// A job being written by CreateJob is invisible, but its shard items exist
// while it is written: a Complete reaching them then (it would need a map
// message of a job not yet created) records the part. If that CreateJob is
// abandoned and taken over, the rewrite erases it.
//
// # Batches
//
// CompleteParts records a batch with one conditional UpdateItem per shard
// it touches (ShardSize is 256): "DELETE parts :P", the minute's counter
// ADDed len(P), on condition that the batch's first part is pending (and
// the rest of Complete's condition). The write of one shard is atomic, and
// ALL_OLD says which of P were pending: Completed counts those, the write
// emptied the shard when they were all it held (then the propagation, as
// Complete's), and given-up parts among P are converted one by one, as
// Complete converts one (so the wpGivenUp index stays right). A batch of
// 16 parts of one shard is 1 WCU (0.067 WCU a part over a 5,000-part job,
// TestCompleteParts_Capacity). When the first part is not pending (a
// redelivered batch, a receive after a partial one), the rare path reads
// the job item and the shard and writes the parts still pending; if some
// part ended between a write's condition and its effect, the counter is put
// right by a second small write. The parts are checked against the job's
// total before anything is written, so a part out of range records
// nothing: the Store keeps the total of every job it has read or created
// (wp run always peeks first), else it reads the job item. A legacy job's
// batch is one "DELETE parts :P" on its item, the same way.
//
// # Progress: LastEnded and the recent counts
//
// Neither costs a write of its own. Every write that ends parts (Complete,
// CompleteParts, GiveUp, a conversion of a given-up part) sets the shard's
// t and ADDs the number of parts it ended to the counter of its minute,
// m<unix minute>, in the same UpdateItem. The write that empties a shard
// carries the shard's counters of the window (from its ALL_OLD) into its
// group item with the group's write that already happens, and sets the
// group's t to the shard's last end; the write that empties a group carries
// the group's counters (from its ALL_NEW) into the job item (wpm<minute>)
// and sets wpEnded. These hand-overs happen exactly once, in the
// conditional writes that remove a shard from its group and a group from
// its job. Status reads the job item, the pending groups and the pending
// shards anyway: LastEnded is the latest t (or wpEnded) among them,
// RecentEnded the sum of their counters of the last RecentMinutes minutes,
// and nothing is counted twice, since an item stops being read when it
// hands its counters up. A conversion in a shard that has emptied counts
// on the job item, in the write that already takes the part out of the
// index. A retry that makes an emptied shard or group pending again removes
// the counters it had handed up. Peek and List, which read fewer items, may
// report an older LastEnded, and count the recent parts (RecentWindow set)
// only for a finished job, whose counters are all on the job item.
//
// Items stay small: each of those writes REMOVEs the counters of the 30
// minutes before the window (names need no alias: a letter and digits), and
// is made on condition that the item was written within those 30 minutes
// (t, or wpEnded on a job item). Then every counter older than the window is
// among those removed, so after any write an item holds at most
// RecentMinutes counters. A write to an item idle for longer is refused;
// it is made again after a read of the item, removing the stale counters the
// read found (the gap path: 1 refused write and a read more, once per
// 30-minute idle, never in a job making progress).
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
// (which propagates within milliseconds) from being overtaken. (The
// per-minute counters are counters, but of a rate, not of what is pending:
// a lost hand-over only undercounts RecentEnded for ten minutes.)
//
// # CreateJob
//
// CreateJob puts the job item in a "creating" state (invisible to every
// other method) on condition attribute_not_exists(id), writes the shard and
// group items with BatchWriteItem (25 items a call, 16 calls in flight,
// unprocessed items retried with exponential backoff), then removes the
// creating state on condition that it still holds its token, setting
// created (the time CreateJob began) and the index keys. While it writes
// it renews a 60 second lease every 15 seconds. A later CreateJob of the same
// id finding a creating item whose lease ran out (the writer died or was
// interrupted; an interrupted writer gives up its lease at once) takes it
// over, deletes the leftovers beyond the new job's extent and writes the
// job again; one whose lease is live returns ErrExists. One finding a job
// whose expiry has passed takes it over the same way (on condition that its
// wpExpires is unchanged), and deletes the details items of its given-up
// parts.
//
// # Expiry
//
// A job created with ExpireAfter, or given one by SetExpiry, has wpExpires
// (unix seconds, the table's time to live attribute) on every item: the job
// item, shards and groups (written with it by CreateJob) and the details of
// given-up parts (written with the shard's). A job whose wpExpires has passed
// is gone for every method whatever the time to live has deleted yet (it
// deletes within days): every read of the job item checks it, and every
// conditional write on the job item and Complete's shard write require it
// not past. SetExpiry writes it on every item, one write an item (3,924 WCU
// for a 1,000,000-part job: two minutes or so of a 30-unit table, writes
// refused for throughput tried again meanwhile), in an order that keeps the
// job whole when interrupted: an earlier expiry goes on the job item first
// (a time past makes the job gone at once), a later one or none on the other
// items first, so that the time to live never deletes a shard of a job
// that lives on.
//
// # Listing
//
// The wp-jobs index is a sparse global secondary index: hash key wpList
// (S, always "jobs"), range key wpListed (N, the job's created, 0 for the
// libraries' jobs, so that they sort last). Only job items carry its keys,
// set by the write that makes a job visible (and removed by Delete's
// first), so it holds one entry a job, none for shards, groups or details.
// List queries it newest first (ScanIndexForward false, wpListed >= Since,
// pages of opt.Limit+1 items, the expired filtered out), holds the jobs of
// one millisecond until the next to yield them by id, and builds each
// Status from the projected job item and its pending groups (BatchGetItem):
// Remaining is estimated from the groups' pending shards (Estimated; exact,
// 0, for a finished job), no shard is read. A legacy job's item is read
// whole, for its parts set. Measured on 200 finished 20-part jobs and one
// running 200,000-part job (TestReadUnits): 4.5 read units for the newest
// 20 (2.5 with stale reads), 7 for all 201 (5), where the scan read 1,258.
//
// The projection is INCLUDE, of the 19 attributes a Status needs (indexAttrs;
// DynamoDB takes 20). ALL would copy a legacy job's parts set (up to 400 KB)
// into the index and rewrite it at every completion the libraries make, and
// every reduce claim and counter would write the index too; with INCLUDE,
// a write to the job item writes the index only when it changes what is
// listed (creation, a group emptying, a give-up, a failure, the reduce
// flags, the expiry, the numbering): a few writes a job, not one a part.
// The counters have no fixed names, so the index cannot hold them: List
// leaves RecentWindow 0.
//
// A job item that lacks the keys (a legacy one, or one an older wp wrote)
// gets them from the first Peek or Status, in the best-effort write that
// records a legacy job's numbering or adds the guard to a job of layout 1,
// else in one small write of its own, once a job. Until then the index
// does not list it; ListOptions.Scan lists it, and UpgradeTable puts the
// keys on every job. On a table without the index (the Query says so), List
// scans the table as before, sorts the jobs newest first, and tells
// opt.Note why it reads the whole table and that wp table upgrade adds the
// index.
//
// # Reads a 30-unit table can afford
//
// Status reads the job item, then its pending groups, then only their
// pending shards (BatchGetItem, 100 keys a call, in parallel), and reports
// the read units in ReadUnits (ReturnConsumedCapacity). With
// backends.AllowStale every read is eventually consistent, half the units:
// 392 read units for the 200,000-part job above (784 strongly consistent),
// 1,962 for a 1,000,000-part job (3,924). Each shard costs the 0.5 or 1 unit
// DynamoDB charges any item read: one item per 256 parts is the price of a
// one-unit completion. Peek reads the job item only (1 unit).
//
// # Throttling
//
// A request DynamoDB refuses for throughput (ProvisionedThroughputExceeded-
// Exception, ThrottlingException, RequestLimitExceeded), once the SDK's own
// retries are spent, returns an error matching backends.ErrThrottled; so
// do batch writes and reads whose unprocessed items outlast their retries.
// Writes of many items that are not on wp run's path (SetExpiry, Fail's
// marks, UpgradeTable) back off and try again for minutes instead.
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
//	                    receives, at (unix ms), stderr (at most 512 bytes),
//	                    reason (at most 1,024), wpExpires: under 1 KB
//	                    without a reason, under 2 KB with the longest
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
//     for that write. The room kept (8 KiB) also takes what is written on
//     a job item after CreateJob besides the index: the counters (at most
//     10, about 150 bytes), wpEnded, the index keys a legacy job gets, the
//     expiry, the reason of Fail (at most 1,024 bytes, backends.MaxReason).
//     Whatever write of a give-up fails after the shard's, the emptied
//     shard is still propagated, so the job can end.
//   - A later Complete of a given-up part fails the hot path's condition;
//     the rare path reads the shard and converts the part: "DELETE gu :p"
//     on condition contains(gu, :p) (exactly once, against a Retry or
//     another conversion), then "DELETE wpGivenUp :p" and the details
//     item. It ends the part again: it counts it and sets t like a
//     completion (see "Progress"). It waits while the part is given up on its shard but not yet
//     counted (its GiveUp is between its two writes), so the index never
//     keeps a part the conversion removed.
//   - Retry: the parts to move are those in the index. Each shard holding
//     some is held (r, rx, on condition that no live hold exists, in shard
//     order), which makes conversions of its parts wait; the held shards
//     are read, and the parts still in gu are the ones to move. Then the
//     job item gets their groups back (ADD groups) with the reduce state
//     cleared, each group its shards (ADD left), and only then each shard
//     its parts ("DELETE gu :P ADD parts :P REMOVE r, rx" on condition that
//     the hold is still this call's; t stays, as a retry ends no part); then the index drops them and a job
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
// # Compatibility
//
// Jobs an older wp wrote (layout 2 without the new attributes, layout 1)
// are read and completed as before: no wpExpires is no expiry, no counters
// only count from their first completion by this wp, a shard whose t is
// older than 30 minutes takes the gap path once, and the index lists them
// once a wp command reads them or UpgradeTable runs (which also guards wp
// 1's jobs, since a listing from the index cannot see that they lack the
// guard). An older wp completes this wp's jobs as it completes its own: it
// does not count the parts it ends, and its writes, which set t without the
// sweep, can leave a few stale counters that the next gap path removes.
// The libraries read and complete their jobs as before: wp adds only
// prefixed attributes to their items (wpList, wpListed, wpFirstPart,
// wpGivenUp, wpExpires).
//
// # Bounded waits
//
// Each request is tried at most 4 times, each attempt bounded by a 15 second
// HTTP timeout (5 seconds to connect), with at most 2 seconds between
// attempts: an unreachable endpoint fails a call within about a minute, a
// refused connection within a few seconds.
package dynamodb
