package bufpool

import "testing"

func TestClasses(t *testing.T) {
	for _, c := range []struct{ n, want int }{
		{1, MinSize}, {MinSize, MinSize}, {MinSize + 1, 2 * MinSize}, {64 << 10, 64 << 10},
		{4<<20 + 4, 8 << 20}, {MaxSize, MaxSize}, {MaxSize + 1, MaxSize + 1},
	} {
		if got := ClassSize(c.n); got != c.want {
			t.Errorf("ClassSize(%d) = %d, want %d", c.n, got, c.want)
		}
	}
}

func TestPoolReuses(t *testing.T) {
	p := New(1 << 20)
	a := p.Get(60 << 10)
	if len(a) != 64<<10 || p.Stats().Lent != 64<<10 || p.Stats().Misses != 1 {
		t.Fatalf("first Get: len %d, %+v", len(a), p.Stats())
	}
	a[0] = 42
	p.Put(a)
	b := p.Get(64 << 10)
	if b[0] != 42 || p.Stats().Misses != 1 || p.Stats().Idle != 0 {
		t.Fatalf("second Get did not reuse the buffer given back: %+v", p.Stats())
	}
	if n := testing.AllocsPerRun(100, func() { p.Put(p.Get(64 << 10)) }); n != 0 {
		t.Fatalf("%.1f allocations per Get/Put in steady state", n)
	}
}

func TestPoolIdleBound(t *testing.T) {
	p := New(100 << 10)
	var bufs [][]byte
	for range 4 {
		bufs = append(bufs, p.Get(64<<10))
	}
	for _, b := range bufs {
		p.Put(b)
	}
	st := p.Stats()
	if st.Idle != 64<<10 || st.Released != 3 || st.Lent != 0 {
		t.Fatalf("idle %d released %d lent %d: want one 64 KiB buffer kept", st.Idle, st.Released, st.Lent)
	}
	p.Put(make([]byte, 5000)) // not a class size: not kept
	if p.Stats().Idle != 64<<10 {
		t.Fatal("kept a buffer that is not a class size")
	}
}

func TestBudget(t *testing.T) {
	host := NewBudget(100, nil)
	a, b := NewBudget(80, host), NewBudget(80, host)
	if !a.Take(60) || !b.Take(40) {
		t.Fatal("takes within both bounds refused")
	}
	if b.Take(10) {
		t.Fatal("take past the parent's bound allowed")
	}
	if b.Used() != 40 || host.Used() != 100 || b.Refused() != 1 {
		t.Fatalf("after a refusal: b %d host %d refused %d", b.Used(), host.Used(), b.Refused())
	}
	if a.Take(30) {
		t.Fatal("take past its own bound allowed")
	}
	a.Give(60)
	if !b.Take(40) || host.Used() != 80 {
		t.Fatalf("after Give: host used %d", host.Used())
	}
	var none *Budget
	if !none.Take(1 << 40) {
		t.Fatal("a nil budget refused")
	}
}

func TestTrim(t *testing.T) {
	p := New(1 << 20)
	a, b := p.Get(4096), p.Get(64<<10)
	p.Put(a)
	p.Put(b)
	if got := p.Trim(); got != 4096+64<<10 {
		t.Fatalf("Trim dropped %d bytes, want %d", got, 4096+64<<10)
	}
	if s := p.Stats(); s.Idle != 0 || s.Lent != 0 {
		t.Fatalf("after Trim: %+v", s)
	}
	misses := p.Stats().Misses
	p.Get(4096)
	if p.Stats().Misses != misses+1 {
		t.Fatal("a Get after Trim was served from a dropped buffer")
	}
}
