package relay_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentrelay/agentrelay/frame"
	"github.com/agentrelay/agentrelay/relay"
	"github.com/agentrelay/agentrelay/relaytest"
	"github.com/agentrelay/agentrelay/ring"
)

// TestRingFullForSeconds: the guest stops reading its console for 3 s while
// 16 clients keep sending pipelined, sequence-numbered, checksummed frames.
// The Rx ring fills, the relay stops reading the clients and their sockets
// push back; nothing is dropped. Afterwards the guest has every frame, each
// client's in order, the relay's ring-full time covers the pause, and no
// client was evicted or disconnected. Meanwhile the guest keeps writing to
// every client and they keep receiving: the two directions are independent.
func TestRingFullForSeconds(t *testing.T) {
	const (
		before = 500 * time.Millisecond
		pause  = 3 * time.Second
		after  = time.Second
	)
	c, err := ring.NewConsole(0)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dir, err := os.MkdirTemp("", "ringfull")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "agent.sock")
	r, err := relay.New(relay.Options{Socket: sock, Console: c, ReadyTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c.Backend().Write(relaytest.ReadyFrame(t))
	if err := r.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	runDone := make(chan error, 1)
	go func() { runDone <- r.Run(ctx) }()
	defer func() {
		cancel()
		<-runDone
	}()

	errs := make(chan error, 64)
	fail := func(err error) {
		select {
		case errs <- err:
		default:
		}
	}

	e := &relaytest.Env{Socket: sock}
	var clients [frame.MaxClients]*relaytest.Client
	for range clients {
		cl, err := e.DialErr(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Conn.Close()
		clients[cl.Slot()] = cl
	}

	// The guest's reader checks every host→guest frame: per slot, sequence
	// numbers in order, data intact.
	var paused atomic.Bool
	var received [frame.MaxClients]atomic.Uint32
	readerDone := make(chan struct{})
	defer func() {
		cancel()
		<-readerDone // before the console closes
	}()
	go func() {
		defer close(readerDone)
		sc := frame.NewScanner(2 * frame.MaxFrame)
		for ctx.Err() == nil {
			if paused.Load() {
				time.Sleep(time.Millisecond)
				continue
			}
			n, err := c.Rx.Read(sc.Space(), time.Now().Add(10*time.Millisecond))
			if errors.Is(err, os.ErrDeadlineExceeded) {
				continue
			}
			if err != nil {
				return
			}
			sc.Commit(n)
			for {
				f, err := sc.Next()
				if err != nil {
					break
				}
				slot, seq, ok := checkRingFullFrame(f)
				if !ok || slot >= frame.MaxClients || f.ID != clients[slot].ID(1) {
					fail(fmt.Errorf("guest: corrupt frame id %d (%d bytes)", f.ID, len(f.Raw)))
					return
				}
				if want := received[slot].Load(); seq != want {
					fail(fmt.Errorf("guest: slot %d: frame %d where %d was due (lost or reordered)", slot, seq, want))
					return
				}
				received[slot].Add(1)
			}
		}
	}()

	start := time.Now()
	pauseAt, resumeAt, stop := start.Add(before), start.Add(before+pause), start.Add(before+pause+after)
	var wg sync.WaitGroup

	// Clients send frames of 16 B to 64 KiB back to back, batched into
	// writes of up to 256 KiB; a write blocks while the relay does not read.
	var sent [frame.MaxClients]atomic.Uint32
	for slot, cl := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(slot), 1))
			var buf []byte
			for seq := uint32(0); time.Now().Before(stop); {
				buf = buf[:0]
				first := seq
				for len(buf) < 256<<10 {
					buf = appendRingFullFrame(buf, cl.ID(1), slot, seq, 16<<rng.IntN(13))
					seq++
				}
				cl.Conn.SetWriteDeadline(time.Now().Add(pause + 5*time.Second))
				if _, err := cl.Conn.Write(buf); err != nil {
					fail(fmt.Errorf("client %d: write: %v", slot, err))
					return
				}
				sent[slot].Add(seq - first)
			}
		}()
	}

	// The guest writes to every client all along, and each client checks
	// its frames' order and counts those that arrive while the guest is not
	// reading.
	var toClient [frame.MaxClients]atomic.Uint32
	var duringPause [frame.MaxClients]atomic.Uint32
	var guestDone atomic.Bool
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer guestDone.Store(true)
		var buf []byte
		for seq := uint32(0); time.Now().Before(stop); seq++ {
			buf = buf[:0]
			for slot, cl := range clients {
				buf = appendRingFullFrame(buf, cl.ID(1), slot, seq, 64)
			}
			if _, err := c.Backend().Write(buf); err != nil {
				fail(fmt.Errorf("guest: write: %v", err))
				return
			}
			for slot := range clients {
				toClient[slot].Add(1)
			}
			time.Sleep(time.Millisecond)
		}
	}()
	var readers sync.WaitGroup
	for slot, cl := range clients {
		readers.Add(1)
		go func() {
			defer readers.Done()
			last := time.Now()
			for seq := uint32(0); ; {
				raw, err := cl.Recv(100 * time.Millisecond)
				if err != nil {
					if guestDone.Load() && seq == toClient[slot].Load() {
						return // all there
					}
					if time.Since(last) < pause+5*time.Second && isTimeout(err) {
						continue
					}
					fail(fmt.Errorf("client %d: read after %d frames (guest sent %d): %v", slot, seq, toClient[slot].Load(), err))
					return
				}
				last = time.Now()
				f, _ := frame.Split(raw)
				s, got, ok := checkRingFullFrame(f)
				if !ok || s != slot || got != seq {
					fail(fmt.Errorf("client %d: frame %d (slot %d) where %d was due", slot, got, s, seq))
					return
				}
				seq++
				if last.After(pauseAt.Add(100*time.Millisecond)) && last.Before(resumeAt) {
					duringPause[slot].Add(1)
				}
			}
		}()
	}

	time.Sleep(time.Until(pauseAt))
	paused.Store(true)
	s0 := r.Stats()
	time.Sleep(time.Until(resumeAt))
	stalled := r.Stats().FramesToGuest - s0.FramesToGuest
	paused.Store(false)
	wg.Wait()

	// Every frame sent reaches the guest; every guest frame its client.
	deadline := time.Now().Add(20 * time.Second)
	for slot := range clients {
		for received[slot].Load() < sent[slot].Load() && len(errs) == 0 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
	}
	readers.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	s := r.Stats()
	var total, least, leastPaused uint32 = 0, ^uint32(0), ^uint32(0)
	for slot := range clients {
		if got, want := received[slot].Load(), sent[slot].Load(); got != want {
			t.Fatalf("slot %d: guest got %d frames of %d", slot, got, want)
		}
		total += sent[slot].Load()
		least = min(least, sent[slot].Load())
		leastPaused = min(leastPaused, duringPause[slot].Load())
	}
	t.Logf("%d frames (%.0f MB) to the guest, at least %d per client; %d forwarded while the guest was paused (the ring filling); ring full %v in all; guest→client frames during the pause: at least %d per client",
		total, float64(s.BytesToGuest)/1e6, least, stalled, time.Duration(s.RingFullNanos).Round(time.Millisecond), leastPaused)
	if s.RingFullNanos < uint64(pause-200*time.Millisecond) {
		t.Errorf("RingFullNanos = %v, want at least the pause (%v)", time.Duration(s.RingFullNanos), pause)
	}
	if s.Evictions != 0 || s.Disconnects != 0 || s.ProtocolErrors != 0 || s.ClientsActive != frame.MaxClients {
		t.Errorf("Evictions=%d Disconnects=%d ProtocolErrors=%d ClientsActive=%d, want 0, 0, 0, 16",
			s.Evictions, s.Disconnects, s.ProtocolErrors, s.ClientsActive)
	}
	if leastPaused < 50 {
		t.Errorf("a client got only %d guest frames in the %v the guest was not reading", leastPaused, pause)
	}
}

// appendRingFullFrame appends a frame of size bytes under id carrying
// [slot][seq][crc of what follows][filler].
func appendRingFullFrame(dst []byte, id uint32, slot int, seq uint32, size int) []byte {
	body := make([]byte, max(size, frame.HeaderSize+9)-frame.HeaderSize)
	body[0] = byte(slot)
	binary.BigEndian.PutUint32(body[1:], seq)
	for i := 9; i < len(body); i++ {
		body[i] = byte(seq) + byte(i)
	}
	binary.BigEndian.PutUint32(body[5:], crc32.ChecksumIEEE(body[9:]))
	return frame.AppendFrame(dst, id, 0, body)
}

func checkRingFullFrame(f frame.Frame) (slot int, seq uint32, ok bool) {
	b := f.Body
	if len(b) < 9 || binary.BigEndian.Uint32(b[5:]) != crc32.ChecksumIEEE(b[9:]) {
		return 0, 0, false
	}
	return int(b[0]), binary.BigEndian.Uint32(b[1:]), true
}

func isTimeout(err error) bool {
	var ne interface{ Timeout() bool }
	return errors.As(err, &ne) && ne.Timeout()
}
