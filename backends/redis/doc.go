// Package redis is the Redis progress store, selected by redis:// and
// rediss:// (TLS) store URLs:
//
//	redis://[[user]:password@]host[:port][/db][?option=value&...]
//	rediss://:password@host:6380/2
//	redis://10.0.0.1:6379/0?addr=10.0.0.2:6379&addr=10.0.0.3:6379
//	rediss://:password@clustercfg.example.cache.amazonaws.com:6379/0?min_replicas=1&replica_timeout=500ms
//
// The URL is read by go-redis's ParseURL, so its query options work
// (dial_timeout, read_timeout, write_timeout, max_retries, pool_size, ...,
// skip_verify for rediss); an unknown option is an error. Errors never
// contain the password. wp reads three options itself (client.go):
//
//   - addr=host:port, any number of times: more seed nodes of a Redis
//     Cluster, tried in order after the URL's host when it does not answer
//     (go-redis's ParseClusterURL convention). On a standalone server it is
//     an error.
//   - min_replicas=N: every write wp reports as done waits until N replicas
//     have it (WAIT), or fails; see "Replication waits" below.
//   - replica_timeout=D: how long that wait may take (default 1s; shorter
//     than read_timeout; only with min_replicas).
//
// # Failing fast
//
// Unless the URL says otherwise, a connection is dialed for at most 5s
// (dial_timeout, with 2 dial attempts), every command waits at most 5s for
// its reply (read_timeout, write_timeout), and a command that failed on the
// network is retried at most twice (max_retries=2). Deadlines of the caller's
// context are honoured too. Open sends INFO replication cluster (in place
// of the PING it used to send: the same one round trip) with the caller's
// context, capped at 10s when that context has no earlier deadline, so an
// unreachable or wrong URL is reported by Open in bounded time instead of
// by the first Complete. A server that accepts connections but stops answering makes a
// call fail after about 15s (three 5s reads) at most.
//
// The pool holds up to max(64, 10*GOMAXPROCS) connections so that dozens of
// goroutines completing parts do not queue for a connection.
//
// # Layout
//
// Every key of one job holds the job id in a hash tag, so all of them live
// in one hash slot and the Lua scripts below can touch them together even on
// Redis Cluster:
//
//	wp:{JOBID}:job   hash: total, remaining, meta (the metadata JSON),
//	                 created (server time, unix ms), failed ("1"), error,
//	                 reduce_sent ("1"), reduced ("1"), claim (token),
//	                 claim_exp (server time, unix ms); since given-up parts:
//	                 given_up (count), tolerance ("3", "10%"), tol_limit
//	                 (the most parts tolerated), tol_reason (the failure
//	                 reason when given_up passes it), reduce_on_failure
//	                 ("1"), digest, failed_by_tolerance ("1"); since
//	                 batches and expiry: batch, batch_bytes, expires (unix
//	                 seconds; absent: never), ended (server time, unix ms,
//	                 of the last part that ended), recent_since (unix ms:
//	                 parts are counted from then), ends_extra (ends that
//	                 remaining does not show), r:<unix minute> (at most
//	                 backends.RecentMinutes of them: the job's ends when
//	                 the minute's first part ended)
//	wp:{JOBID}:done  string used as a bitmap: bit p set = part p ended
//	                 (completed or given up)
//	wp:{JOBID}:gu    hash: part -> JSON details of a given-up part
//	                 ({"c":exit,"s":signal,"r":receives,"t":unix ms,"e":stderr,
//	                 "w":reason})
//	wp:{JOBID}:gub   bitmap: bit p set = part p given up (GivenUp walks it
//	                 to list parts in order, 125 KB per million parts)
//
// and, for the store as a whole:
//
//	wp:jobs          sorted set: member a job id, score its created (unix
//	                 ms; 0 when unknown), for List (see "Listing")
//	wp:jobs:indexed  string: set once the jobs of an older wp, which have
//	                 no wp:jobs entry, have been added to it
//
// The job exists exactly when its hash does; the hash is written by one
// script, so a job is visible whole or not at all.
//
// # Why a bitmap of completed parts
//
// The predecessor (watchbot-progress-py) kept a set of pending part ids. A
// bitmap is smaller and cheaper: 1,000,000 parts take 125 KB (a set of a
// million integers takes tens of MB), creating a job writes one hash and no
// per-part data at all (O(1) writes, where a pending set must be filled in
// pipelined chunks: this is better than the "pipelined in chunks" creation
// first asked for), and missing bytes read as zero, so an untouched job has
// no bitmap key. A bitmap holds at most 2^32 bits, which caps a job at
// 4,294,967,296 parts.
//
// # Atomicity
//
// Every write is one Lua script (EVALSHA, falling back to EVAL once per
// server), so it is atomic and costs one round trip. Complete and
// CompleteParts are the same script, for one part or a batch (ShardSize is
// 0: a batch of any size is one script, since the job's keys share a
// slot): it checks that the job exists, has not failed and that every part
// is in range (a part out of range records nothing), sets each part's bit,
// and counts the parts whose bit was clear; remaining drops by that count,
// and the call that takes it to 0 is the finisher. Completed counts those
// parts and the given-up parts the call converted. Reduce claims compare
// their expiry to the Redis server's clock (TIME), so the clocks of the
// workers do not matter. A claim token is a random UUID.
//
// # Progress: when a part last ended, and how many lately
//
// The script that ends parts (Complete, CompleteParts, GiveUp) also
// records when, in the same call: no other write, no other round trip.
// It reads the server's TIME and writes it as ended in the HSET that
// writes remaining (the script is atomic, so it writes the value it read
// less the parts it completed, in place of the HINCRBY it used to send).
// A call that ends no part (a duplicate) writes neither.
//
// RecentEnded needs no count per ending. The job's ends so far, E = total
// - remaining + ends_extra, grow by exactly one per part that ends
// (ends_extra, written only by the rare Retry, adds the ends remaining
// does not show: a retried part gone back to pending; a given-up part
// completed ends nothing and counts nothing), so the parts ended since a
// moment are E now
// less E then. The first ending of each minute (its minute differs from
// that of the ended field the script has just read) writes E as it was
// into r:<minute>; Status counts E now less the r: field of the earliest
// minute of its window that has one (no such field: no part ended in the
// window), which is exactly the parts ended since that minute's first
// ending, and none ended in the window before it. That call, at most one a
// minute per job, also drops the r: fields older than the window (HKEYS of
// the job hash, a few dozen fields), so a hash holds at most
// backends.RecentMinutes of them. Status reads the hash and TIME in one
// pipeline to the job's master, so the window is measured by the clock
// that wrote the fields; Peek, on wp run's path, stays one HGETALL and
// leaves RecentWindow 0, as the contract allows. Measured with INFO
// commandstats on the 2-core test machine (100,000 EVALSHA a round, 15
// rounds), the completion script went from 4.6 to 6.2 us of server time in
// the fastest rounds (5.5 to 7.7 at the median): TIME, two more fields read
// and one written, and the loop that serves batches; an HINCRBY per ending
// would have cost 1.3 us more. BenchmarkComplete32, whose 32 goroutines
// keep the server busy, lost about 11% (median of 15 alternating runs:
// 72,600 to 64,600 completions/s); a lone completion's latency did not
// change measurably (the round trip dominates). BenchmarkCompleteParts32,
// batches of 16, completes about 420,000 parts/s.
//
// # Expiry
//
// A job created with ExpireAfter keeps expires (backends.ExpirySecond of
// created + ExpireAfter) in its hash, which CreateJob EXPIREATs. Its other
// keys are created later, by the scripts that end parts, and those scripts
// apply the stored expiry to what they may have created: GiveUp to the gu
// hash and gub bitmap, and the first ending of a minute to the done
// bitmap. The first ending of a job is always the first of its minute (the
// job has no ended field yet), and it is the SETBIT that creates the
// bitmap, so no key of the job ever lacks the expiry, at the cost of one
// EXPIREAT a minute. HSET, HINCRBY and SETBIT keep a key's TTL. SetExpiry
// is one script: EXPIREAT on every key and expires updated (PERSIST and
// expires removed for never; a time already past deletes the job at
// once). Redis removes expired keys itself, and all the job's keys share
// one expiry time, so an expired job is gone at once for every method, and
// CreateJob of its id just works (createScript deletes any leftover
// keys). Its wp:jobs entry goes when a List reaches it.
//
// # Given-up parts
//
// A given-up part sets its done bit like a completed one, so Pending and
// the hot path of Complete do not change: remaining counts pending parts,
// and the call that takes it to 0, Complete or GiveUp, is the finisher.
// GiveUp is one script: a set done bit is a duplicate (nothing written);
// otherwise it sets the bit, writes the gu entry and gub bit, moves
// remaining and given_up, and fails the job when given_up passes
// tol_limit. Complete reads given_up with the fields it already reads and
// looks at the gu hash only for a set bit of a job with given-up parts, so
// completions of a job without any do not pay for them; it then converts
// the part (HDEL gu, clear the gub bit, given_up
// - 1). Retry is one script for all its parts: HDEL decides, per part,
// whether it was still given up, so two Retry calls, or a Retry and a late
// Complete, never move or count a part twice, and remaining goes back up
// by exactly the parts moved before any of them can be completed again.
//
// A retried script (max_retries, after a lost reply) may run twice; the
// second run is then a duplicate and reports Finisher false. That is the same
// case as a worker crashing after Complete: Done && !ReduceSent tells the
// caller to ClaimReduce.
//
// Concurrent Complete and CompleteParts calls of one process share round
// trips: see batch.go. A lone call is sent at once; calls that arrive
// while others are in flight go out together as one pipeline (each script
// still atomic on its own).
// With 32 goroutines on the 2-core test machine this took BenchmarkComplete32
// from about 40,000 to about 60,000 completions/s. go-redis's own
// AutoPipeline was tried and not used: it is marked experimental and, with
// the server stopped, kept a call with a 2s context deadline waiting 30s.
//
// # Listing
//
// List reads the index wp:jobs, newest first: ZREVRANGEBYSCORE from +inf
// down to opt.Since, in pages of max(opt.Limit, 100) entries (at most
// 1000), and each page's jobs with one pipeline of HGETALL, so a listing
// that stops after n jobs reads about max(n, 100) hashes whatever the
// store holds. Entries of equal scores come in descending id order and
// List wants ascending: the entries of a page's last score are held back
// until the next page, which resumes at that score past those already
// read, shows the tie complete. An entry whose job is gone (expired,
// deleted, or a crash between index and job) is dropped by a
// compare-and-delete on its score, so that a job created again under the
// id keeps its new entry. List reads the server's TIME once, for the
// recent counts.
//
// On a standalone server CreateJob writes the entry in the same script as
// the job, and Delete removes it in the same script as the keys. On a
// cluster the index is one key on one master (one write per job created
// goes there): CreateJob first runs a script on it that adds the entry
// with that master's TIME and returns it, and the job is created with that
// time as created, so the score is the job's creation time exactly; a
// crash between the two leaves an entry without a job, never a job
// without an entry. A CreateJob that finds the job existing puts the entry
// back to the existing job's created (unless another CreateJob wrote it
// since), and Delete removes the entry after the keys. On a cluster an
// entry younger than ten minutes without a job is kept, as it may be a
// CreateJob between its two calls.
//
// Jobs written by an older wp have no entry. The first List of a database
// (no wp:jobs:indexed) first SCANs for them (SCAN MATCH wp:{*}:job COUNT
// 1000 on every master of a cluster in turn, each page's created read with
// one pipeline of HGET), adds each with its created (a score is only ever
// raised, so the entry of a job created meanwhile stands), sets the marker
// and tells opt.Note why this listing is slow; opt.Scan does the same scan
// on every call, for jobs an older wp went on creating after it (a fleet
// mid-upgrade). Job ids cannot hold glob or hash-tag characters
// (backends.ValidateJobID refuses them), so the pattern matches exactly
// wp's job hashes.
//
// # Older jobs
//
// A job written by an older wp has none of the fields above marked "since
// batches and expiry" and works as before: it never expires (until
// SetExpiry), has Batch 0, and has LastEnded zero and RecentWindow 0
// until a part of it ends under this wp, which sets recent_since (HSETNX)
// and counts from then. Parts an older wp still ends are counted too, once
// this wp has written a minute's snapshot, since they move remaining; they
// do not move ended. An older wp reads jobs of this one as before (it
// ignores the new fields) but does not maintain ended, the index or the
// expiry of the keys it creates.
//
// # Throttling
//
// A script that runs longer than busy-reply-threshold (lua-time-limit)
// makes the server answer every other command with BUSY until it ends;
// nothing of such a command was done, so every method returns that error
// wrapped with backends.ErrThrottled, for callers that retry.
//
// # Redis Cluster
//
// Open asks the first seed that answers (the URL's host, then each addr=)
// for INFO replication cluster. cluster_enabled:1 selects go-redis's
// ClusterClient, seeded with every seed and carrying the URL's TLS
// settings, credentials, timeouts, retries and pool size (per node; a
// cluster that serves only TLS and requires a password is tested); it
// then reads the slot map (CLUSTER SLOTS), so a cluster that does not
// answer is reported by Open. A URL that names any node works, a replica
// included (an ElastiCache or MemoryDB configuration endpoint is a name
// for some node; no such service was tried in wp's tests). A
// cluster has only db 0; another db is an error. A standalone server keeps
// the single-node client and pays nothing for the detection (INFO replaces
// PING). A standalone replica is refused (every write would fail there).
// Routing policies are off (DisableRoutingPolicies): wp sends only
// single-key commands and scripts, and the policies would make every
// process fetch COMMAND first.
//
// Everything holds on a cluster as on one server, because every key of a
// job is in one slot: each script still runs atomically on the job's
// master, so the one-finisher guarantee and the reduce claim are unchanged.
// A job's throughput is one master's: a cluster spreads jobs, not the parts
// of one job. Batched completions (batch.go) go out as go-redis's cluster
// pipeline, which splits by node; a MOVED or ASK reply (a resharding, a
// failover) is followed by the cluster client.
//
// # Replication waits
//
// Redis replicates asynchronously: a write a master acknowledged and then
// lost in a failover is gone. For wp that means a completion reported to
// wp run (which exits 0, so watchbot deletes the message) can vanish, and
// its part stays pending forever; or a job's creation, failure or reduce
// claim can vanish. With min_replicas=N, every write (CreateJob, Complete
// lone and batched, CompleteParts, GiveUp, Fail, SetExpiry, ClaimReduce,
// MarkReduceSent and the rest, and on a cluster the index writes of
// CreateJob, Delete and SetExpiry, each on the index's master) sends WAIT
// N timeout after its script, in one pipeline on one connection to the
// key's master (WAIT cannot run inside a script and counts the
// acknowledgements of its own connection's last write; on a cluster the
// master is found with MasterForKey). List's own writes to the index
// (filling it, dropping entries of jobs gone) do not wait: losing one
// loses nothing the next List does not redo. Fewer than N acknowledgements within replica_timeout is an
// error wrapping ErrReplication: the write stands on the master but wp run
// exits 75, so the message is retried, and the retry is a harmless
// duplicate. wait.go says how reads and refused writes that wp run succeeds
// on are covered too.
//
// Without min_replicas, a completion acknowledged by a master that dies
// before its replica has it is lost in the failover: the part is pending
// again after watchbot deleted its message, and the job never ends (wp
// pending shows the part; re-deliver it by hand). With min_replicas=1 and
// one replica per master, a master that dies leaves its slots to a replica
// with no replica of its own: writes to those slots fail (exit 75) until
// another replica syncs, for example the old master restarted.
//
// Jobs written by watchbot-progress-py ({jobid}-metadata and {jobid}-parts)
// are not read by this store.
package redis
