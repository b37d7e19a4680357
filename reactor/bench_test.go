package reactor

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// BenchmarkDispatch measures one event round trip through the loop on one
// thread: write a byte into a socketpair, one iteration (epoll_wait, clock,
// dispatch), and the handler reading the byte back.
func BenchmarkDispatch(b *testing.B) {
	l := newLoop(b)
	a, c := newSocketpair(b)
	buf := make([]byte, 64)
	one := []byte{1}
	if _, err := l.Add(a, unix.EPOLLIN, handlerFunc(func(uint32) { drain(a, buf) })); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		unix.Write(c, one)
		if err := l.RunOnce(-1); err != nil {
			b.Fatal(err)
		}
	}
	if s := l.Stats(); s.Events < uint64(b.N) {
		b.Fatalf("%d events for %d round trips", s.Events, b.N)
	}
}

// BenchmarkDispatchBaseline is BenchmarkDispatch without the loop: the
// same write and reads, so the difference is what epoll_wait and dispatch
// add to a round trip.
func BenchmarkDispatchBaseline(b *testing.B) {
	a, c := newSocketpair(b)
	buf := make([]byte, 64)
	one := []byte{1}
	b.ReportAllocs()
	for b.Loop() {
		unix.Write(c, one)
		drain(a, buf)
	}
}

// BenchmarkDispatchBatch measures the per-event cost when one epoll_wait
// returns many events: 64 ready socketpairs per iteration.
func BenchmarkDispatchBatch(b *testing.B) {
	const fds = 64
	l := newLoop(b)
	buf := make([]byte, 64)
	one := []byte{1}
	peers := make([]int, fds)
	for i := range peers {
		a, c := newSocketpair(b)
		peers[i] = c
		if _, err := l.Add(a, unix.EPOLLIN, handlerFunc(func(uint32) { drain(a, buf) })); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	start := time.Now()
	for b.Loop() {
		for _, c := range peers {
			unix.Write(c, one)
		}
		if err := l.RunOnce(-1); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(time.Since(start).Nanoseconds())/float64(b.N*fds), "ns/event")
}

// BenchmarkPingPong measures a cross-thread round trip: Run on its own
// locked thread echoes each byte back to a peer blocked in read, so the
// figure includes the loop waking from epoll_wait and the peer's wakeup.
func BenchmarkPingPong(b *testing.B) {
	l := newLoop(b)
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	a, c := fds[0], fds[1]
	if err := unix.SetNonblock(a, true); err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 64)
	if _, err := l.Add(a, unix.EPOLLIN, handlerFunc(func(uint32) {
		if n := drain(a, buf); n > 0 {
			unix.Write(a, buf[:n])
		}
	})); err != nil {
		b.Fatal(err)
	}
	stop := startRun(b, l)
	one := []byte{1}
	in := make([]byte, 1)
	b.ReportAllocs()
	for b.Loop() {
		unix.Write(c, one)
		if _, err := unix.Read(c, in); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if err := stop(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkSubmit measures Submit from another goroutine to a running loop.
func BenchmarkSubmit(b *testing.B) {
	l := newLoop(b)
	stop := startRun(b, l)
	done := make(chan struct{})
	f := func() {}
	b.ReportAllocs()
	for b.Loop() {
		l.Submit(f)
	}
	l.Submit(func() { close(done) })
	<-done
	b.StopTimer()
	if err := stop(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkTimerReschedule measures moving an armed timer among 1024 others,
// the per-event cost of keeping an idle deadline current.
func BenchmarkTimerReschedule(b *testing.B) {
	var q timers
	q.init()
	tms := make([]Timer, 1024)
	f := func(time.Time) {}
	for i := range tms {
		q.schedule(&tms[i], int64(i)*1000, f)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		t := &tms[i%len(tms)]
		q.schedule(t, t.when+1024*1000, f)
		i++
	}
}
