package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/wp-tools/wp/backends"
	"github.com/wp-tools/wp/internal/testservers"
)

// serverMinute is the shared server's unix minute now.
func serverMinute(t *testing.T, st *Store) int64 {
	t.Helper()
	now, err := st.c.Time(testCtx(t, time.Minute)).Result()
	if err != nil {
		t.Fatal(err)
	}
	return now.Unix() / 60
}

// TestLayout_Progress pins the fields the scripts that end parts write:
// ended (unix ms) and r:<unix minute> counts, recent_since from creation,
// batch and batch_bytes; and the index entry, whose score is created.
func TestLayout_Progress(t *testing.T) {
	st := openShared(t)
	ctx := testCtx(t, time.Minute)
	if err := st.CreateJob(ctx, backends.Job{ID: "lay-p", Total: 10, Batch: 4, BatchBytes: 1000, Tolerance: backends.Tolerance{Parts: 3}}); err != nil {
		t.Fatal(err)
	}
	h := st.c.HGetAll(ctx, "wp:{lay-p}:job").Val()
	if h["batch"] != "4" || h["batch_bytes"] != "1000" || h["recent_since"] != h["created"] || h["ended"] != "" {
		t.Errorf("new job hash = %v, want batch 4, batch_bytes 1000, recent_since = created, no ended", h)
	}
	if z := st.c.ZScore(ctx, indexKey, "lay-p").Val(); strconv.FormatFloat(z, 'f', -1, 64) != h["created"] {
		t.Errorf("index score %v, want created %s", z, h["created"])
	}
	m := serverMinute(t, st)
	if _, err := st.CompleteParts(ctx, "lay-p", []int64{0, 1, 2}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.GiveUp(ctx, "lay-p", 3, backends.GiveUpInfo{Reason: "dead-lettered"}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Complete(ctx, "lay-p", 0); err != nil { // a duplicate counts nothing
		t.Fatal(err)
	}
	h = st.c.HGetAll(ctx, "wp:{lay-p}:job").Val()
	for k, v := range h {
		if km, ok := strings.CutPrefix(k, "r:"); ok {
			// The job's ends before the minute's first ending: 0, unless
			// the minute turned during the test.
			if mm, _ := strconv.ParseInt(km, 10, 64); (mm != m || v != "0") && mm != m+1 {
				t.Errorf("field %s = %s: want r:%d = 0 (or the next minute's)", k, v, m)
			}
		}
	}
	if h["ended"] == "" || h["remaining"] != "6" || h["ends_extra"] != "" {
		t.Errorf("job hash = %v, want ended set, 6 remaining, no ends_extra", h)
	}
	if s, err := st.Status(ctx, "lay-p"); err != nil || s.RecentEnded != 4 {
		t.Errorf("Status = %+v, %v; want RecentEnded 4", s, err)
	}
	if got := st.c.HGet(ctx, "wp:{lay-p}:gu", "3").Val(); !strings.Contains(got, `"w":"dead-lettered"`) {
		t.Errorf("gu field 3 = %s, want the reason as w", got)
	}
}

// TestRecent_OldMinutesDropped: RecentEnded is the job's ends now less
// its ends at the earliest minute of the window that has a snapshot; the
// first ending of a minute writes that minute's snapshot and drops the
// r: fields out of the window (and any from a clock that went back), so
// the hash never holds more than RecentMinutes of them. Conversions and
// retries keep the count of ends from falling.
func TestRecent_OldMinutesDropped(t *testing.T) {
	st := openShared(t)
	ctx := testCtx(t, time.Minute)
	if err := st.CreateJob(ctx, backends.Job{ID: "rec-old", Total: 100, Tolerance: backends.Tolerance{Parts: 10}}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CompleteParts(ctx, "rec-old", []int64{0, 1, 2, 3, 4}); err != nil {
		t.Fatal(err)
	}
	m := serverMinute(t, st)
	f := func(d int64) string { return "r:" + strconv.FormatInt(m+d, 10) }
	// As if the job's earlier parts had ended over the last 20 minutes
	// (2 of them before 3 minutes ago), its last ending the minute
	// before, and a clock gone back had left a minute 30 minutes ahead.
	key := jobKey("rec-old")
	st.c.HDel(ctx, key, f(0), f(1))
	st.c.HSet(ctx, key, f(-20), 0, f(-backends.RecentMinutes), 0, f(-3), 2, f(30), 1, "ended", (m-1)*60000+5)
	status := func() backends.Status {
		t.Helper()
		s, err := st.Status(ctx, "rec-old")
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	if s := status(); s.RecentEnded != 5-2 {
		t.Errorf("RecentEnded = %d, want 3 (5 ends now, 2 at the window's earliest snapshot)", s.RecentEnded)
	}
	if _, err := st.Complete(ctx, "rec-old", 5); err != nil { // the minute's first ending
		t.Fatal(err)
	}
	h := st.c.HGetAll(ctx, key).Val()
	for _, d := range []int64{-20, -backends.RecentMinutes, 30} {
		if _, ok := h[f(d)]; ok {
			t.Errorf("field %s (minute %+d) is still there after the minute's first ending", f(d), d)
		}
	}
	if h[f(-3)] != "2" || (h[f(0)] != "5" && h[f(1)] != "5") {
		t.Errorf("job hash %v: want %s = 2 kept and this minute's snapshot 5", h, f(-3))
	}
	if s := status(); s.RecentEnded != 6-2 {
		t.Errorf("RecentEnded = %d, want 4", s.RecentEnded)
	}
	// A give-up, its conversion (no end), a give-up that is retried and
	// the retried part's end: three more ends.
	if _, err := st.GiveUp(ctx, "rec-old", 6, backends.GiveUpInfo{}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Complete(ctx, "rec-old", 6); err != nil {
		t.Fatal(err)
	}
	if _, err := st.GiveUp(ctx, "rec-old", 7, backends.GiveUpInfo{}); err != nil {
		t.Fatal(err)
	}
	if moved, err := st.Retry(ctx, "rec-old", []int64{7}); err != nil || len(moved) != 1 {
		t.Fatalf("Retry = %v, %v", moved, err)
	}
	if s := status(); s.RecentEnded != 4+2 {
		t.Errorf("RecentEnded after a give-up, its conversion and a retried give-up = %d, want 6", s.RecentEnded)
	}
	if _, err := st.Complete(ctx, "rec-old", 7); err != nil {
		t.Fatal(err)
	}
	s := status()
	if s.RecentEnded != 7 {
		t.Errorf("RecentEnded = %d, want 7", s.RecentEnded)
	}
	if p, err := st.Peek(ctx, "rec-old"); err != nil || p.RecentWindow != 0 || !p.LastEnded.Equal(s.LastEnded) {
		t.Errorf("Peek = %+v, %v; want no recent window and Status's LastEnded", p, err)
	}
}

// ttls are the remaining times to live of the job's four keys (-2: no
// key, -1: no expiry).
func ttls(t *testing.T, st *Store, id string) []time.Duration {
	t.Helper()
	ctx := testCtx(t, time.Minute)
	var d []time.Duration
	for _, k := range jobKeys(id) {
		v, err := st.c.PTTL(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		d = append(d, v)
	}
	return d
}

// TestLayout_Expiry: every key of an expiring job carries its expiry,
// those created after the job (the done bitmap by the first ending, gu
// and gub by the first give-up) too; SetExpiry moves all of them, and
// zero removes them.
func TestLayout_Expiry(t *testing.T) {
	st := openShared(t)
	ctx := testCtx(t, time.Minute)
	if err := st.CreateJob(ctx, backends.Job{ID: "lay-e", Total: 10, ExpireAfter: time.Hour, Tolerance: backends.Tolerance{Parts: 5}}); err != nil {
		t.Fatal(err)
	}
	check := func(what string, want time.Duration, keys int) {
		t.Helper()
		for i, d := range ttls(t, st, "lay-e") {
			switch {
			case i >= keys:
				if d != -2 {
					t.Errorf("%s: %s exists (TTL %v), want it not created yet", what, jobKeys("lay-e")[i], d)
				}
			case want < 0:
				if d != -1 {
					t.Errorf("%s: %s TTL %v, want none", what, jobKeys("lay-e")[i], d)
				}
			case d < want-5*time.Second || d > want+time.Second:
				t.Errorf("%s: %s TTL %v, want about %v", what, jobKeys("lay-e")[i], d, want)
			}
		}
	}
	check("created", time.Hour, 1)
	if _, err := st.Complete(ctx, "lay-e", 1); err != nil {
		t.Fatal(err)
	}
	check("after the first completion", time.Hour, 2)
	if _, err := st.Complete(ctx, "lay-e", 2); err != nil {
		t.Fatal(err)
	}
	if _, err := st.GiveUp(ctx, "lay-e", 3, backends.GiveUpInfo{}); err != nil {
		t.Fatal(err)
	}
	check("after a give-up", time.Hour, 4)
	if err := st.SetExpiry(ctx, "lay-e", time.Now().Add(48*time.Hour)); err != nil {
		t.Fatal(err)
	}
	check("after SetExpiry", 48*time.Hour, 4)
	if err := st.SetExpiry(ctx, "lay-e", time.Time{}); err != nil {
		t.Fatal(err)
	}
	check("after SetExpiry(zero)", -1, 4)
	if h := st.c.HGetAll(ctx, "wp:{lay-e}:job").Val(); h["expires"] != "" {
		t.Errorf("expires = %q after SetExpiry(zero), want none", h["expires"])
	}

	// A job given an expiry before any part ended: its bitmap, created
	// later, gets it too.
	if err := st.CreateJob(ctx, backends.Job{ID: "lay-e2", Total: 3}); err != nil {
		t.Fatal(err)
	}
	if err := st.SetExpiry(ctx, "lay-e2", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Complete(ctx, "lay-e2", 0); err != nil {
		t.Fatal(err)
	}
	if d := st.c.PTTL(ctx, doneKey("lay-e2")).Val(); d < 59*time.Minute || d > time.Hour+time.Second {
		t.Errorf("done bitmap TTL %v, want about an hour", d)
	}
}

// TestOlderJobs: jobs an older wp wrote (no index entry, no progress or
// expiry fields) are listed after the first listing indexes them (which
// says why it is slow), keep working, and start counting recent parts at
// their first ending under this wp; a job an older wp writes after that
// is listed by Scan.
func TestOlderJobs(t *testing.T) {
	st := openShared(t)
	ctx := testCtx(t, time.Minute)
	old := func(id string, created int64) {
		st.c.HSet(ctx, jobKey(id), "total", "4", "remaining", "4", "meta", "", "created", strconv.FormatInt(created, 10))
	}
	now := time.Now().UnixMilli()
	old("old-1", now-3000)
	old("old-2", now-2000)
	if err := st.CreateJob(ctx, backends.Job{ID: "new-1", Total: 2}); err != nil {
		t.Fatal(err)
	}
	list := func(opt backends.ListOptions) (ids []string, notes []string) {
		t.Helper()
		opt.Note = func(s string) { notes = append(notes, s) }
		if err := st.List(ctx, opt, func(s backends.Status) error {
			ids = append(ids, s.ID)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return ids, notes
	}
	ids, notes := list(backends.ListOptions{})
	if got := fmt.Sprint(ids); got != "[new-1 old-2 old-1]" || len(notes) != 1 {
		t.Errorf("first List = %s with notes %q; want [new-1 old-2 old-1] and one note", got, notes)
	}
	t.Logf("note: %s", notes)
	if _, notes := list(backends.ListOptions{}); len(notes) != 0 {
		t.Errorf("second List noted %q, want nothing (the index is filled)", notes)
	}
	old("old-3", now-1000) // by an older wp, after the index was filled
	if ids, _ := list(backends.ListOptions{}); len(ids) != 3 {
		t.Errorf("List = %v: want the 3 indexed jobs (old-3 has no entry)", ids)
	}
	if ids, notes := list(backends.ListOptions{Scan: true}); fmt.Sprint(ids) != "[new-1 old-3 old-2 old-1]" || len(notes) != 1 {
		t.Errorf("List with Scan = %v, notes %q; want old-3 too, and a note", ids, notes)
	}

	s, err := st.Status(ctx, "old-1")
	if err != nil || s.RecentWindow != 0 || !s.LastEnded.IsZero() || !s.ExpiresAt.IsZero() || s.Batch != 0 {
		t.Errorf("older job = %+v, %v; want no recent window, LastEnded, expiry or batch", s, err)
	}
	if c, err := st.CompleteParts(ctx, "old-1", []int64{0, 1}); err != nil || c.Completed != 2 {
		t.Fatalf("CompleteParts of an older job = %+v, %v", c, err)
	}
	s, err = st.Status(ctx, "old-1")
	if err != nil || s.RecentEnded != 2 || s.RecentWindow <= 0 || s.RecentWindow > time.Minute || s.LastEnded.IsZero() {
		t.Errorf("older job after CompleteParts = %+v, %v; want 2 parts counted since then", s, err)
	}
	if err := st.Delete(ctx, "old-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.c.ZScore(ctx, indexKey, "old-1").Result(); !errors.Is(err, goredis.Nil) {
		t.Errorf("Delete left the index entry: %v", err)
	}
}

// TestListTies: jobs of one creation millisecond, more than a page of
// them, come in ascending id order, each once, with the entries of jobs
// gone among them dropped; and a listing that stops early reads about one
// page, not the whole index.
func TestListTies(t *testing.T) {
	st := openShared(t)
	ctx := testCtx(t, time.Minute)
	const n = 250
	var want []string
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("tie-%03d", i)
		if err := st.CreateJob(ctx, backends.Job{ID: id, Total: 1}); err != nil {
			t.Fatal(err)
		}
		// Three creation times: 1000 ms (the oldest) for most, 2000
		// for ten, 3000 for one.
		ms := int64(1000)
		switch {
		case i == 7:
			ms = 3000
		case i%25 == 0:
			ms = 2000
		}
		st.c.HSet(ctx, jobKey(id), "created", ms)
		st.c.ZAdd(ctx, indexKey, goredis.Z{Score: float64(ms), Member: id})
		if i%40 == 3 {
			st.c.Del(ctx, jobKey(id)) // gone, its entry left
		}
	}
	for _, ms := range []int64{3000, 2000, 1000} {
		for i := 0; i < n; i++ {
			got := int64(1000)
			switch {
			case i == 7:
				got = 3000
			case i%25 == 0:
				got = 2000
			}
			if got == ms && i%40 != 3 {
				want = append(want, fmt.Sprintf("tie-%03d", i))
			}
		}
	}
	var ids []string
	if err := st.List(ctx, backends.ListOptions{}, func(s backends.Status) error {
		ids = append(ids, s.ID)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(ids) != fmt.Sprint(want) {
		t.Errorf("List = %v\nwant %v", ids, want)
	}
	if left := st.c.ZCard(ctx, indexKey).Val(); left != int64(len(want)) {
		t.Errorf("index holds %d entries after List, want %d (the gone jobs' dropped)", left, len(want))
	}

	// Stopping after 5: about one page of HGETALL, not one per job.
	if err := st.c.ConfigResetStat(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	stop := errors.New("enough")
	k := 0
	if err := st.List(ctx, backends.ListOptions{Limit: 5}, func(backends.Status) error {
		if k++; k == 5 {
			return stop
		}
		return nil
	}); !errors.Is(err, stop) {
		t.Fatal(err)
	}
	if calls := commandCalls(t, st, "hgetall"); calls > listPageMin {
		t.Errorf("a listing stopped after 5 jobs read %d job hashes, want at most a page (%d)", calls, listPageMin)
	} else {
		t.Logf("a listing stopped after 5 of %d jobs read %d job hashes", len(want), calls)
	}
}

// commandCalls is how many times the shared server ran cmd since the
// last CONFIG RESETSTAT.
func commandCalls(t *testing.T, st *Store, cmd string) int64 {
	t.Helper()
	info, err := st.c.Info(testCtx(t, time.Minute), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_"+cmd+":calls="); ok {
			n, _ := strconv.ParseInt(strings.SplitN(rest, ",", 2)[0], 10, 64)
			return n
		}
	}
	return 0
}

// TestOneScriptPerCompletion: a Complete and a CompleteParts of 64 parts
// are one script call each, the recording of their time and count
// included.
func TestOneScriptPerCompletion(t *testing.T) {
	st := openShared(t)
	ctx := testCtx(t, time.Minute)
	if err := st.CreateJob(ctx, backends.Job{ID: "one-call", Total: 100}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Complete(ctx, "one-call", 99); err != nil { // the script is loaded
		t.Fatal(err)
	}
	if err := st.c.ConfigResetStat(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Complete(ctx, "one-call", 0); err != nil {
		t.Fatal(err)
	}
	parts := make([]int64, 64)
	for i := range parts {
		parts[i] = int64(1 + i)
	}
	if _, err := st.CompleteParts(ctx, "one-call", parts); err != nil {
		t.Fatal(err)
	}
	if n := commandCalls(t, st, "evalsha"); n != 2 {
		t.Errorf("%d EVALSHA calls for a Complete and a CompleteParts, want 2", n)
	}
	if n := commandCalls(t, st, "time"); n != 2 {
		t.Errorf("%d TIME calls (in the scripts), want 2", n)
	}
}

// TestThrottled: while another client's script keeps the server busy
// past busy-reply-threshold, calls fail with ErrThrottled (BUSY) and
// record nothing; once it ends they work.
func TestThrottled(t *testing.T) {
	srv := testservers.StartRedisT(t, "--busy-reply-threshold", "50")
	st := openURL(t, srv.URL)
	ctx := testCtx(t, time.Minute)
	if err := st.CreateJob(ctx, backends.Job{ID: "busy", Total: 3}); err != nil {
		t.Fatal(err)
	}
	opt, _ := goredis.ParseURL(srv.URL)
	other := goredis.NewClient(opt)
	defer other.Close()
	done := make(chan error, 1)
	go func() {
		// Read-only, so that SCRIPT KILL can end it.
		done <- other.Eval(context.Background(), "local i = 0 while true do i = i + 1 end", nil).Err()
	}()
	deadline := time.Now().Add(10 * time.Second)
	var err error
	for {
		_, err = st.Status(ctx, "busy")
		if err != nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !errors.Is(err, backends.ErrThrottled) {
		t.Fatalf("Status while a script runs: err = %v, want ErrThrottled", err)
	}
	t.Logf("busy: %v", err)
	calls := map[string]error{}
	_, calls["Complete"] = st.Complete(ctx, "busy", 0)
	_, calls["CompleteParts"] = st.CompleteParts(ctx, "busy", []int64{1, 2})
	_, calls["GiveUp"] = st.GiveUp(ctx, "busy", 1, backends.GiveUpInfo{})
	_, calls["Status"] = st.Status(ctx, "busy")
	_, calls["Peek"] = st.Peek(ctx, "busy")
	calls["CreateJob"] = st.CreateJob(ctx, backends.Job{ID: "busy-2", Total: 1})
	calls["SetExpiry"] = st.SetExpiry(ctx, "busy", time.Now().Add(time.Hour))
	calls["List"] = st.List(ctx, backends.ListOptions{}, func(backends.Status) error { return nil })
	for name, err := range calls {
		if !errors.Is(err, backends.ErrThrottled) {
			t.Errorf("%s while a script runs: err = %v, want ErrThrottled", name, err)
		}
	}
	for {
		if err := st.c.ScriptKill(ctx).Err(); err != nil {
			t.Logf("SCRIPT KILL: %v", err)
		}
		select {
		case err := <-done:
			t.Logf("the busy script ended: %v", err)
		case <-time.After(time.Second):
			continue
		}
		break
	}
	s, err := st.Status(ctx, "busy")
	if err != nil || s.Remaining != 3 || s.GivenUp != 0 {
		t.Fatalf("after the busy script: %+v, %v; want nothing recorded (3 pending)", s, err)
	}
	if c, err := st.CompleteParts(ctx, "busy", []int64{0, 1, 2}); err != nil || !c.Finisher {
		t.Errorf("CompleteParts after the busy script = %+v, %v; want the finisher", c, err)
	}
}
