package relay

import (
	"testing"
	"time"
)

func TestSessionTableStartEnd(t *testing.T) {
	tb := newSessionTable(2, 100)
	if r := tb.start(3, 100, true, false); r != started {
		t.Fatalf("first start: %v", r)
	}
	if r := tb.start(3, 100, true, true); r != started || tb.open[3] != 1 {
		t.Fatalf("restart of an open session: %v, open %d; want started, 1", r, tb.open[3])
	}
	if s, _ := tb.get(100); !s.exec || !s.tty || s.logID != 2 {
		t.Fatalf("restarted exec session %+v: want exec, tty, a new log id", s)
	}
	tb.start(3, 101, false, false)
	if r := tb.start(3, 102, false, false); r != startTooMany {
		t.Fatalf("third session of a client limited to 2: %v, want startTooMany", r)
	}
	tb.endByClient(4, 101) // not its session
	if _, ok := tb.get(101); !ok {
		t.Fatal("another slot's client ended session 101")
	}
	tb.endByClient(3, 101)
	tb.end(100)
	if tb.len() != 0 || tb.open[3] != 0 {
		t.Fatalf("after ending both: %d sessions, open %d", tb.len(), tb.open[3])
	}
}

func TestSessionTableQuarantine(t *testing.T) {
	tb := newSessionTable(3, 100)
	tb.start(1, 10, true, false)
	tb.start(1, 11, false, false)
	tb.start(2, 20, false, false)
	t0 := time.Unix(1000, 0)
	var killed []uint32
	if n := tb.quarantine(1, t0.Add(time.Second), func(id uint32) { killed = append(killed, id) }); n != 2 || len(killed) != 2 {
		t.Fatalf("quarantined %d, killed %v; want 2 and 2", n, killed)
	}
	if tb.open[1] != 0 || tb.quarantined[1] != 2 || !tb.isQuarantined(10) || tb.isQuarantined(20) {
		t.Fatalf("open %d quarantined %d: want 0 and 2, ids 10 and 11 only", tb.open[1], tb.quarantined[1])
	}
	// The slot's next client: a quarantined id is refused; the slot holds 3
	// sessions in all, so one more start fits and the next does not.
	if r := tb.start(1, 10, false, false); r != startQuarantined {
		t.Fatalf("start on a quarantined id: %v", r)
	}
	if r := tb.start(1, 12, false, false); r != started {
		t.Fatalf("start beside 2 quarantined: %v", r)
	}
	if r := tb.start(1, 13, false, false); r != startSlotFull {
		t.Fatalf("start beyond the slot's bound: %v, want startSlotFull", r)
	}
	// The guest ends 10; 11 expires.
	tb.end(10)
	var expired []uint32
	next := tb.expire(t0.Add(time.Second), func(id uint32, s session) { expired = append(expired, id) })
	if len(expired) != 1 || expired[0] != 11 || !next.IsZero() {
		t.Fatalf("expired %v, next %v: want [11] and none left", expired, next)
	}
	if tb.quarantined[1] != 0 || tb.len() != 2 {
		t.Fatalf("after expiry: quarantined %d, %d sessions; want 0 and 2", tb.quarantined[1], tb.len())
	}
}

// A quarantine's expiry entry must not end a later quarantine of the same
// id, and stale entries must not pile up.
func TestSessionTableStaleEntries(t *testing.T) {
	tb := newSessionTable(4, 100)
	t0 := time.Unix(1000, 0)
	for round := range 100 {
		tb.start(5, 50, false, false)
		tb.quarantine(5, t0.Add(time.Duration(round)*time.Millisecond), func(uint32) {})
		tb.end(50) // the guest ends it at once
	}
	if len(tb.fifo) > 4+1 {
		t.Fatalf("%d expiry entries for no live quarantine, want compaction", len(tb.fifo))
	}
	tb.start(5, 50, false, false)
	tb.quarantine(5, t0.Add(time.Hour), func(uint32) {})
	tb.expire(t0.Add(time.Minute), func(id uint32, s session) { t.Fatalf("expired %d early", id) })
	if !tb.isQuarantined(50) {
		t.Fatal("an old entry ended a newer quarantine")
	}
}

func TestSessionTableTotal(t *testing.T) {
	tb := newSessionTable(4, 5)
	for slot := range 2 {
		for i := range 3 {
			r := tb.start(slot, uint32(100*slot+i+1), false, false)
			if want := started; slot == 1 && i == 2 {
				want = startRelayFull
				if r != want {
					t.Fatalf("sixth session: %v, want startRelayFull", r)
				}
			} else if r != want {
				t.Fatalf("slot %d session %d: %v", slot, i, r)
			}
		}
	}
	tb.end(1)
	if r := tb.start(1, 103, false, false); r != started {
		t.Fatalf("after one ended: %v", r)
	}
}
