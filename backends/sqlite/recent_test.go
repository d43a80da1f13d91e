package sqlite

import (
	"testing"
	"time"

	"github.com/wp-tools/wp/backends"
)

func TestRecent(t *testing.T) {
	var r recent
	r.add(100, 3)
	r.add(100, 2)
	r.add(103, 4) // three minutes on: 100 stays in the window
	if got := r.since(100); got != 9 {
		t.Errorf("since(100) = %d, want 9", got)
	}
	if got := r.since(101); got != 4 {
		t.Errorf("since(101) = %d, want 4", got)
	}
	r.add(102, 1) // the clock went back a minute: counted in the last
	if got := r.since(103); got != 5 {
		t.Errorf("after a clock step back: since(103) = %d, want 5", got)
	}
	r.add(100+backends.RecentMinutes, 7) // minute 100 drops out
	if got := r.since(0); got != 12 {
		t.Errorf("after RecentMinutes: since(0) = %d, want 12 (minute 100's 5 dropped)", got)
	}
	r.add(1000, 1) // long after: everything before drops out
	if got := r.since(0); got != 1 {
		t.Errorf("long after: since(0) = %d, want 1", got)
	}
	back, err := decodeRecent(r.encode())
	if err != nil || back != r {
		t.Errorf("decode(encode(r)) = %+v, %v; want %+v", back, err, r)
	}
	if _, err := decodeRecent([]byte{1, 2, 3}); err == nil {
		t.Error("decodeRecent of 3 bytes: no error")
	}
	if z, err := decodeRecent(nil); err != nil || z != (recent{}) {
		t.Errorf("decodeRecent(NULL) = %+v, %v; want no counts", z, err)
	}
}

func TestRecentWindow(t *testing.T) {
	now := time.Unix(600*60+30, 0) // 30 s into minute 600
	var r recent
	r.add(600-backends.RecentMinutes, 100) // just out of the window
	r.add(600-backends.RecentMinutes+1, 1)
	r.add(600, 2)
	n, w := r.window(now, time.Unix(0, 0))
	if want := time.Duration(backends.RecentMinutes-1)*time.Minute + 30*time.Second; n != 3 || w != want {
		t.Errorf("window of an old job = %d over %v, want 3 over %v", n, w, want)
	}
	n, w = r.window(now, now.Add(-20*time.Second)) // a job 20 s old
	if n != 3 || w != 20*time.Second {
		t.Errorf("window of a young job = %d over %v, want 3 over 20s", n, w)
	}
	if _, w := r.window(now, now.Add(time.Hour)); w != time.Millisecond {
		t.Errorf("window of a job from the future (clock set back) = %v, want the 1ms floor", w)
	}
}
