package dynamodb

import (
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/wp-tools/wp/backends"
)

// Per-minute counters of ended parts, and LastEnded (see doc.go, "Progress").
//
// A shard or group item counts the parts that ended in minute M (unix
// minutes) in an attribute m<M> (a job item in wpm<M>): the write
// that ends parts ADDs to the counter of its minute, and REMOVEs the
// counters of the recentSweep minutes before the window, so that an item
// keeps only the counters of the last RecentMinutes minutes. That is enough
// when the item was written within recentSweep minutes (its t, or wpEnded on
// a job item): the write's condition says so, and a write that finds the
// item idle longer is refused and done again with the names a read found
// (the gap path). So after any write at minute W an item holds counters of
// minutes W-RecentMinutes+1 .. W only: at most RecentMinutes of them.

const (
	// recentSweep is how many minutes of counters before the window every
	// write removes, and so how long an item may stay unwritten before a
	// write must read it first.
	recentSweep = 30
	// shardCounterPrefix names the counters of shard and group items;
	// jobCounterPrefix those of job items (the libraries own unprefixed
	// names there).
	shardCounterPrefix = "m"
	jobCounterPrefix   = "wpm"
)

func minuteOf(ms int64) int64 {
	if ms < 0 {
		return (ms - 59_999) / 60_000
	}
	return ms / 60_000
}

func counterName(prefix string, minute int64) string {
	return prefix + strconv.FormatInt(minute, 10)
}

// counters are ended parts by unix minute.
type counters map[int64]int64

// countersOf reads the counters of an item.
func countersOf(it item, prefix string) counters {
	cs := counters{}
	for name, v := range it {
		m, ok := counterMinute(name, prefix)
		if !ok {
			continue
		}
		if n, ok := v.(*types.AttributeValueMemberN); ok {
			if c, err := strconv.ParseInt(n.Value, 10, 64); err == nil {
				cs[m] = c
			}
		}
	}
	return cs
}

func counterMinute(name, prefix string) (int64, bool) {
	rest, ok := strings.CutPrefix(name, prefix)
	if !ok || rest == "" || len(rest) > 12 {
		return 0, false
	}
	for i := 0; i < len(rest); i++ {
		if rest[i] < '0' || rest[i] > '9' {
			return 0, false
		}
	}
	m, err := strconv.ParseInt(rest, 10, 64)
	return m, err == nil
}

// windowStart is the first minute counted at minute w.
func windowStart(w int64) int64 { return w - backends.RecentMinutes + 1 }

// inWindow keeps the counters of the window at minute w.
func (cs counters) inWindow(w int64) counters {
	out := counters{}
	for m, n := range cs {
		if m >= windowStart(w) && m <= w && n != 0 {
			out[m] = n
		}
	}
	return out
}

func (cs counters) sum() int64 {
	var n int64
	for _, c := range cs {
		n += c
	}
	return n
}

// plus adds o to cs (in place) and returns cs.
func (cs counters) plus(o counters) counters {
	for m, n := range o {
		cs[m] += n
	}
	return cs
}

// staleMinutes lists the counters of it that are out of the window at
// minute w: what a write after a read removes.
func staleMinutes(it item, prefix string, w int64) []int64 {
	var out []int64
	for m := range countersOf(it, prefix) {
		if m < windowStart(w) {
			out = append(out, m)
		}
	}
	return out
}

// tally is one write's share of the counters: add to the counters of the
// window, remove the sweep before it and any stale minutes a read found.
type tally struct {
	prefix string
	w      int64
	add    counters
	stale  []int64
}

// update is an UpdateExpression built clause by clause.
type update struct {
	set, add, del, remove []string
	names                 map[string]string
	vals                  item
}

func newUpdate() *update { return &update{names: map[string]string{}, vals: item{}} }

func (u *update) name(ns ...string) *update {
	for _, n := range ns {
		u.names["#"+n] = n
	}
	return u
}

func (u *update) val(k string, v types.AttributeValue) *update {
	u.vals[k] = v
	return u
}

func (u *update) Set(s ...string) *update    { u.set = append(u.set, s...); return u }
func (u *update) Add(s ...string) *update    { u.add = append(u.add, s...); return u }
func (u *update) Delete(s ...string) *update { u.del = append(u.del, s...); return u }
func (u *update) Remove(s ...string) *update { u.remove = append(u.remove, s...); return u }

// input is the UpdateItem request of u on the item k of table, on the
// condition cond, returning rv.
func (u *update) input(table string, k item, cond string, rv types.ReturnValue) *ddb.UpdateItemInput {
	return &ddb.UpdateItemInput{
		TableName:                 aws.String(table),
		Key:                       k,
		UpdateExpression:          aws.String(u.String()),
		ConditionExpression:       aws.String(cond),
		ExpressionAttributeNames:  u.names,
		ExpressionAttributeValues: u.vals,
		ReturnValues:              rv,
	}
}

func (u *update) String() string {
	var b strings.Builder
	for _, c := range []struct {
		kw string
		cl []string
	}{{"SET", u.set}, {"ADD", u.add}, {"DELETE", u.del}, {"REMOVE", u.remove}} {
		if len(c.cl) == 0 {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(c.kw + " " + strings.Join(c.cl, ", "))
	}
	return b.String()
}

// counts adds the clauses of t to u: ADD of the counters of the window
// (counter names need no alias: a letter and digits, never a reserved
// word), REMOVE of the sweep and of the stale minutes.
func (u *update) counts(t tally) *update {
	ms := make([]int64, 0, len(t.add))
	for m, n := range t.add {
		if n != 0 && m >= windowStart(t.w) && m <= t.w {
			ms = append(ms, m)
		}
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i] < ms[j] })
	for i, m := range ms {
		k := ":c" + strconv.Itoa(i)
		u.Add(counterName(t.prefix, m) + " " + k)
		u.vals[k] = num(t.add[m])
	}
	gone := map[int64]bool{}
	for m := windowStart(t.w) - recentSweep; m < windowStart(t.w); m++ {
		gone[m] = true
	}
	for _, m := range t.stale {
		if m < windowStart(t.w) {
			gone[m] = true
		}
	}
	rm := make([]int64, 0, len(gone))
	for m := range gone {
		rm = append(rm, m)
	}
	sort.Slice(rm, func(i, j int) bool { return rm[i] < rm[j] })
	for _, m := range rm {
		u.Remove(counterName(t.prefix, m))
	}
	return u
}

// freshCond is the condition that the item was written (attr, in unix ms)
// within recentSweep minutes of nowMS, or never: then the sweep of a write
// leaves no counter out of the window.
func freshCond(u *update, attr string, nowMS int64) string {
	u.name(attr)
	u.vals[":fresh"] = num(nowMS - recentSweep*60_000)
	return "(attribute_not_exists(#" + attr + ") OR #" + attr + " >= :fresh)"
}

// liveCond is the condition that the item has not expired (wpExpires, in
// unix seconds, past) at nowMS.
func liveCond(nm map[string]string, vals item, nowMS int64) string {
	nm["#"+attrExpires] = attrExpires
	vals[":nowSec"] = num(nowMS / 1000)
	return "(attribute_not_exists(#" + attrExpires + ") OR #" + attrExpires + " > :nowSec)"
}

// recentOf is the recent count of cs at now, and the window it covers for
// a job created at created (unix ms; 0: unknown, no window).
func recentOf(cs counters, now time.Time, created int64) (int64, time.Duration) {
	if created <= 0 {
		return 0, 0
	}
	w := minuteOf(now.UnixMilli())
	start := time.UnixMilli(windowStart(w) * 60_000)
	if c := time.UnixMilli(created); c.After(start) {
		start = c
	}
	return cs.inWindow(w).sum(), max(now.Sub(start), time.Millisecond)
}
