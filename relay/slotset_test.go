package relay

import "testing"

func TestSlotSet(t *testing.T) {
	var s slotSet
	if !s.empty() {
		t.Fatal("zero set not empty")
	}
	for _, i := range []int{0, 3, 15} {
		s.add(i)
	}
	if !s.has(3) || s.has(4) || s.count() != 3 || s.lowest() != 0 || s.String() != "{0 3 15}" {
		t.Fatalf("set %v: has(3) %v has(4) %v count %d lowest %d", s, s.has(3), s.has(4), s.count(), s.lowest())
	}
	for _, c := range []struct{ from, want int }{{0, 0}, {1, 3}, {4, 15}, {15, 15}} {
		if got := s.next(c.from); got != c.want {
			t.Errorf("next(%d) = %d, want %d", c.from, got, c.want)
		}
	}
	s.remove(0)
	if got := s.next(0); got != 3 {
		t.Errorf("after remove(0), next(0) = %d", got)
	}
	s.remove(3)
	if got := s.next(4); got != 15 {
		t.Errorf("next(4) = %d, want 15", got)
	}
	if got := s.next(0); got != 15 {
		t.Errorf("wrapping next(0) = %d, want 15", got)
	}
}
