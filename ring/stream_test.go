package ring

import (
	"bytes"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const maxChunk = 256 << 10

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// source is a random pattern with a period that is not a power of two (so it
// drifts against the ring's wrap point), extended by maxChunk so the bytes at
// any stream position pos are source[pos%period:][:n] without wrapping.
type source struct {
	period int
	data   []byte
}

func newSource(seed uint64) *source {
	period := 1<<20 + 17
	data := make([]byte, period+maxChunk)
	rng := rand.New(rand.NewPCG(seed, 1))
	for i := range period {
		data[i] = byte(rng.Uint32())
	}
	copy(data[period:], data)
	return &source{period: period, data: data}
}

func (s *source) at(pos int64, n int) []byte {
	i := int(pos % int64(s.period))
	return s.data[i : i+n]
}

// chunkSize is log-uniform over 1..maxChunk: many tiny chunks and enough big
// ones to move a gigabyte quickly.
func chunkSize(rng *rand.Rand) int {
	k := rng.IntN(19) // 2^0 .. 2^18
	n := 1<<k + rng.IntN(1<<k)
	return min(n, maxChunk)
}

// checker verifies the consumed stream against the source, byte for byte
// and by checksum.
type checker struct {
	t   testing.TB
	src *source
	pos int64
	crc uint32
	bad bool
}

func (c *checker) check(p []byte) {
	if !c.bad && !bytes.Equal(p, c.src.at(c.pos, len(p))) {
		c.t.Errorf("stream corrupt in %d bytes at offset %d", len(p), c.pos)
		c.bad = true
	}
	c.crc = crc32.Update(c.crc, castagnoli, p)
	c.pos += int64(len(p))
}

// streamSize is streamBytes (1 GiB, 256 MiB under -race); -short cuts it
// to 32 MiB.
func streamSize(t *testing.T) int64 {
	if testing.Short() {
		return 32 << 20
	}
	return streamBytes
}

// TestStreamBlocking moves streamBytes through a ring with the blocking
// helpers, both sides using random chunk sizes.
func TestStreamBlocking(t *testing.T) {
	total := streamSize(t)
	r := newRing(t, 256<<10)
	src := newSource(1)
	start := time.Now()

	var wantCRC uint32
	var wg sync.WaitGroup
	wg.Go(func() {
		rng := rand.New(rand.NewPCG(2, 2))
		for pos := int64(0); pos < total; {
			n := int(min(int64(chunkSize(rng)), total-pos))
			p := src.at(pos, n)
			if err := r.WriteAll(p, time.Now().Add(10*time.Second)); err != nil {
				t.Errorf("WriteAll at %d: %v", pos, err)
				return
			}
			wantCRC = crc32.Update(wantCRC, castagnoli, p)
			pos += int64(n)
		}
		r.CloseWrite()
	})

	c := checker{t: t, src: src}
	rng := rand.New(rand.NewPCG(3, 3))
	buf := make([]byte, maxChunk)
	for {
		n, err := r.Read(buf[:chunkSize(rng)], time.Now().Add(10*time.Second))
		c.check(buf[:n])
		if err != nil {
			if err.Error() != "EOF" {
				t.Fatalf("Read at %d: %v", c.pos, err)
			}
			break
		}
	}
	wg.Wait()
	if c.pos != total || c.crc != wantCRC {
		t.Fatalf("received %d bytes crc %#x, sent %d crc %#x", c.pos, c.crc, total, wantCRC)
	}
	s := r.Stats()
	t.Logf("%d MiB in %v; wakes: data %d space %d", total>>20, time.Since(start).Round(time.Millisecond), s.DataWakes, s.SpaceWakes)
}

// TestStreamEventLoop moves streamBytes with both sides running the
// arm/poll protocol by hand, the way an event loop does, the consumer
// reading in place (Peek) without copying.
func TestStreamEventLoop(t *testing.T) {
	total := streamSize(t)
	r := newRing(t, 256<<10)
	src := newSource(4)
	start := time.Now()

	var wg sync.WaitGroup
	wg.Go(func() {
		rng := rand.New(rand.NewPCG(5, 5))
		for pos := int64(0); pos < total; {
			n := int(min(int64(chunkSize(rng)), total-pos))
			p := src.at(pos, n)
			for len(p) > 0 {
				w := r.Write(p)
				p = p[w:]
				if len(p) == 0 || w > 0 || !r.ArmSpace() {
					continue
				}
				if err := pollSleep(r.SpaceFd()); err != nil {
					t.Errorf("producer at %d: %v", pos, err)
					return
				}
				r.DrainSpace()
			}
			pos += int64(n)
		}
		r.CloseWrite()
	})

	c := checker{t: t, src: src}
	rng := rand.New(rand.NewPCG(6, 6))
	for {
		a, b := r.Peek()
		if len(a) > 0 {
			// Consume a random prefix of what is there, in place.
			n := min(chunkSize(rng), len(a)+len(b))
			na := min(n, len(a))
			c.check(a[:na])
			c.check(b[:n-na])
			r.Consume(n)
			continue
		}
		if r.Closed() && r.Len() == 0 {
			break
		}
		if !r.ArmData() {
			continue
		}
		if err := pollSleep(r.DataFd()); err != nil {
			t.Fatalf("consumer at %d: %v", c.pos, err)
		}
		r.DrainData()
	}
	wg.Wait()
	if c.pos != total {
		t.Fatalf("received %d bytes, sent %d", c.pos, total)
	}
	s := r.Stats()
	t.Logf("%d MiB in %v; wakes: data %d space %d", total>>20, time.Since(start).Round(time.Millisecond), s.DataWakes, s.SpaceWakes)
}

// pollSleep sleeps until fd is readable; a generous timeout turns a lost
// wake-up into a test failure instead of a hang.
func pollSleep(fd int) error {
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, 10_000)
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return err
		case n == 0:
			return fmt.Errorf("lost wake-up: no wake byte within 10s")
		}
		return nil
	}
}

// TestNoLostWakeup plays ping-pong over two rings, each side sleeping in poll
// whenever it finds its ring empty, so every round trip is two arm/sleep/wake
// cycles racing a writer. The jitter varies where the writer lands relative
// to the arm and the re-check. A single lost wake-up stalls a side for the
// poll timeout and fails the test.
func TestNoLostWakeup(t *testing.T) {
	rounds := 50000
	if testing.Short() {
		rounds = 2000
	}
	ping := newRing(t, 64)
	pong := newRing(t, 64)

	// recv takes one byte from r, sleeping on DataFd as an event loop
	// would.
	recv := func(r *Ring) (byte, error) {
		for {
			if p := r.Readable(); len(p) > 0 {
				b := p[0]
				r.Consume(1)
				return b, nil
			}
			if !r.ArmData() {
				continue
			}
			if err := pollSleep(r.DataFd()); err != nil {
				return 0, err
			}
			r.DrainData()
		}
	}
	jitter := func(rng *rand.Rand) {
		switch rng.IntN(4) {
		case 0:
		case 1:
			for range rng.IntN(2000) {
				_ = rng.Uint32() // spin a little
			}
		case 2:
			runtime.Gosched()
		case 3:
			// Long enough for the other side to fall asleep; a
			// timer sleep this short would cost a millisecond.
			d := time.Duration(rng.IntN(50)) * time.Microsecond
			for start := time.Now(); time.Since(start) < d; {
			}
		}
	}

	errc := make(chan error, 1)
	go func() {
		rng := rand.New(rand.NewPCG(7, 7))
		for i := range rounds {
			b, err := recv(ping)
			if err != nil {
				errc <- fmt.Errorf("echo side, round %d: %w", i, err)
				return
			}
			jitter(rng)
			pong.Write([]byte{b})
		}
		errc <- nil
	}()

	rng := rand.New(rand.NewPCG(8, 8))
	for i := range rounds {
		jitter(rng)
		ping.Write([]byte{byte(i)})
		b, err := recv(pong)
		if err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		if b != byte(i) {
			t.Fatalf("round %d: echo %d", i, b)
		}
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	// Most rounds must actually have slept, or the test did not test the
	// wake path.
	s1, s2 := ping.Stats(), pong.Stats()
	t.Logf("%d rounds; wakes: ping %d pong %d", rounds, s1.DataWakes, s2.DataWakes)
	if s1.DataWakes+s2.DataWakes < uint64(rounds)/4 {
		t.Fatalf("only %d wake-ups in %d rounds: the sleep path was hardly exercised", s1.DataWakes+s2.DataWakes, rounds)
	}
}
