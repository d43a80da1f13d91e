package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/wp-tools/wp/backends"
)

// countingDriver wraps the SQLite driver and counts the statements the
// store runs, so that the cost of each operation is measured, not assumed.
type countingDriver struct{ d driver.Driver }

// stmtCount counts what reaches the driver: statements executed or queried
// (prepared or not), prepares, and transactions begun.
var stmtCount struct {
	sync.Mutex
	stmts, prepares, begins int
}

func countStmt(what *int) {
	stmtCount.Lock()
	*what++
	stmtCount.Unlock()
}

var registerCounting sync.Once

func (d countingDriver) Open(name string) (driver.Conn, error) {
	c, err := d.d.Open(name)
	if err != nil {
		return nil, err
	}
	return countingConn{c.(sqliteConn)}, nil
}

// sqliteConn is what the SQLite driver's connection implements and the
// store uses.
type sqliteConn interface {
	driver.Conn
	driver.ConnBeginTx
	driver.ConnPrepareContext
	driver.ExecerContext
	driver.QueryerContext
	driver.SessionResetter
	driver.Validator
	driver.Pinger
}

type countingConn struct{ sqliteConn }

func (c countingConn) PrepareContext(ctx context.Context, q string) (driver.Stmt, error) {
	countStmt(&stmtCount.prepares)
	st, err := c.sqliteConn.PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	return countingStmt{st.(sqliteStmt)}, nil
}

func (c countingConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	countStmt(&stmtCount.begins)
	return c.sqliteConn.BeginTx(ctx, opts)
}

func (c countingConn) ExecContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Result, error) {
	countStmt(&stmtCount.stmts)
	return c.sqliteConn.ExecContext(ctx, q, args)
}

func (c countingConn) QueryContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Rows, error) {
	countStmt(&stmtCount.stmts)
	return c.sqliteConn.QueryContext(ctx, q, args)
}

type sqliteStmt interface {
	driver.Stmt
	driver.StmtExecContext
	driver.StmtQueryContext
}

type countingStmt struct{ sqliteStmt }

func (s countingStmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	countStmt(&stmtCount.stmts)
	return s.sqliteStmt.ExecContext(ctx, args)
}

func (s countingStmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	countStmt(&stmtCount.stmts)
	return s.sqliteStmt.QueryContext(ctx, args)
}

// openCounting opens a store whose statements are counted.
func openCounting(t *testing.T) *backends.Store {
	t.Helper()
	registerCounting.Do(func() {
		db, err := sql.Open("sqlite", "")
		if err != nil {
			t.Fatal(err)
		}
		sql.Register("sqlite-counting", countingDriver{db.Driver()})
		db.Close()
	})
	driverName = "sqlite-counting"
	defer func() { driverName = "sqlite" }()
	path := filepath.Join(t.TempDir(), "counted.db")
	st, err := backends.Open(context.Background(), dbURL(path), 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// counted runs fn and returns the statements and transactions it ran.
func counted(fn func()) (stmts, begins int) {
	stmtCount.Lock()
	stmtCount.stmts, stmtCount.begins = 0, 0
	stmtCount.Unlock()
	fn()
	stmtCount.Lock()
	defer stmtCount.Unlock()
	return stmtCount.stmts, stmtCount.begins
}

// TestStatements: what each write of the hot path costs, in statements
// and transactions (each transaction is also a BEGIN IMMEDIATE and a
// COMMIT): a completion is the four statements it was before the job kept
// its last end and per-minute counts, a batch inside one shard too.
func TestStatements(t *testing.T) {
	ctx := context.Background()
	st := openCounting(t)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(st.CreateJob(ctx, backends.Job{ID: "j", Total: 3 * partsPerShard, Tolerance: backends.Tolerance{Parts: 100}}))
	must(st.CreateJob(ctx, backends.Job{ID: "other", Total: 2, ExpireAfter: time.Hour}))
	_, err := st.Complete(ctx, "other", 0)
	must(err)
	// Every connection prepares the statements once; warm them.
	for p := int64(0); p < 8; p++ {
		_, err := st.Complete(ctx, "j", p)
		must(err)
	}
	seq := func(from, to int64) []int64 {
		var s []int64
		for p := from; p < to; p++ {
			s = append(s, p)
		}
		return s
	}
	for _, tc := range []struct {
		what          string
		fn            func() error
		stmts, begins int
	}{
		{"Complete of a pending part", func() error { _, err := st.Complete(ctx, "j", 100); return err }, 4, 1},
		{"Complete, a duplicate", func() error { _, err := st.Complete(ctx, "j", 100); return err }, 2, 1},
		{"CompleteParts, 4000 parts in one shard", func() error { _, err := st.CompleteParts(ctx, "j", seq(101, 4096)); return err }, 4, 1},
		{"CompleteParts, parts in 3 shards", func() error {
			_, err := st.CompleteParts(ctx, "j", []int64{4095 - 4000, 4096, 4097, 8192, 8193})
			return err
		}, 1 + 3*2 + 1, 1},
		{"CompleteParts, duplicates", func() error { _, err := st.CompleteParts(ctx, "j", seq(101, 4096)); return err }, 2, 1},
		{"GiveUp", func() error { _, err := st.GiveUp(ctx, "j", 9000, backends.GiveUpInfo{ExitCode: 1}); return err }, 5, 1},
		{"Complete converting a given-up part", func() error { _, err := st.Complete(ctx, "j", 9000); return err }, 4, 1},
		{"Status", func() error { _, err := st.Status(ctx, "j"); return err }, 1, 0},
		{"Peek", func() error { _, err := st.Peek(ctx, "j"); return err }, 1, 0},
		{"List of 2 jobs", func() error { return st.List(ctx, backends.ListOptions{}, func(backends.Status) error { return nil }) }, 1, 0},
		{"the finishing Complete (+ the expiry sweep, nothing expired)", func() error { _, err := st.Complete(ctx, "other", 1); return err }, 5, 1},
	} {
		var err error
		stmts, begins := counted(func() { err = tc.fn() })
		must(err)
		t.Logf("%s: %d statements, %d transactions", tc.what, stmts, begins)
		if stmts != tc.stmts || begins != tc.begins {
			t.Errorf("%s: %d statements in %d transactions, want %d in %d", tc.what, stmts, begins, tc.stmts, tc.begins)
		}
	}
}
