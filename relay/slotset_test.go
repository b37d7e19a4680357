package relay

import "testing"

func TestSlotSet(t *testing.T) {
	var s slotSet
	if !s.empty() || s.lowest() != -1 || s.next(5, 16) != -1 {
		t.Fatal("zero set not empty")
	}
	for _, i := range []int{0, 3, 15, 63, 64, 127} {
		s.add(i)
	}
	if !s.has(3) || s.has(4) || !s.has(64) || s.count() != 6 || s.lowest() != 0 || s.String() != "{0 3 15 63 64 127}" {
		t.Fatalf("set %v: has(3) %v has(4) %v count %d lowest %d", s, s.has(3), s.has(4), s.count(), s.lowest())
	}
	for _, c := range []struct{ from, n, want int }{
		{0, 128, 0}, {1, 128, 3}, {4, 128, 15}, {16, 128, 63}, {65, 128, 127},
		{4, 16, 15}, // slots past n are not in use
		{16, 16, 0}, // wraps
	} {
		if got := s.next(c.from, c.n); got != c.want {
			t.Errorf("next(%d, %d) = %d, want %d", c.from, c.n, got, c.want)
		}
	}
	s.remove(0)
	s.remove(3)
	if got := s.next(0, 16); got != 15 {
		t.Errorf("after removals next(0, 16) = %d, want 15", got)
	}
	s.remove(15)
	if got := s.next(1, 16); got != -1 {
		t.Errorf("no slot below 16 left: next(1, 16) = %d", got)
	}
	if got := s.next(100, 128); got != 127 {
		t.Errorf("next(100, 128) = %d", got)
	}
}
