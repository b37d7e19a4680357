package relay_test

import (
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentrelay/agentrelay/frame"
	"github.com/agentrelay/agentrelay/guest"
	"github.com/agentrelay/agentrelay/relay"
	"github.com/agentrelay/agentrelay/relaytest"
	"github.com/agentrelay/agentrelay/ring"
)

var soakFor = flag.Duration("soak", 60*time.Second, "how long TestSoak runs (minutes or hours for a real soak)")

// TestSoak runs mixed traffic through the reactor relay and the echo guest
// for -soak: streaming clients with random frame sizes, a latency client,
// and clients that come and go. Every frame carries a sequence number and a
// CRC of its data; every client must get back exactly what it sent, in
// order. It reports frames moved, p99.9 round-trip latency, peak RSS and fds.
//
// Each guest port gets half of -soak.
func TestSoak(t *testing.T) {
	for _, port := range ports {
		t.Run("port="+string(port), func(t *testing.T) { soak(t, port, *soakFor/2) })
	}
}

func soak(t *testing.T, port relaytest.Port, soakFor time.Duration) {
	dir, _ := os.MkdirTemp("", "soak")
	defer os.RemoveAll(dir)
	o := relay.Options{Socket: filepath.Join(dir, "s")}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var startEcho func()
	if port == relaytest.PortFD {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		o.Guest = os.NewFile(uintptr(fds[0]), "guest-console")
		g := os.NewFile(uintptr(fds[1]), "guest")
		defer g.Close()
		startEcho = func() {
			g.Write(guest.DefaultReady())
			go func() {
				buf := make([]byte, 256<<10)
				for {
					n, err := g.Read(buf)
					if err != nil {
						return
					}
					if _, err := g.Write(buf[:n]); err != nil {
						return
					}
				}
			}()
		}
	} else {
		c, err := ring.NewConsole(0)
		if err != nil {
			t.Fatal(err)
		}
		o.Console = c
		startEcho = func() { go guest.Echo(ctx, c, nil) }
	}
	r, err := relay.New(o)
	if err != nil {
		t.Fatal(err)
	}
	startEcho()
	if err := r.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	runDone := make(chan error, 1)
	go func() { runDone <- r.Run(ctx) }()
	e := &relaytest.Env{Socket: filepath.Join(dir, "s")}
	fds0 := openFDs(t)

	var frames atomic.Uint64
	stop := time.Now().Add(soakFor)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	fail := func(err error) {
		select {
		case errs <- err:
		default:
		}
	}

	// Streamers: pipelined frames of 16 B to 64 KiB, checked on return.
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl, err := e.DialErr(5 * time.Second)
			if err != nil {
				fail(err)
				return
			}
			defer cl.Conn.Close()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			sent := make(chan uint32, 64) // sizes in flight, bounded window
			go func() {
				defer close(sent)
				var buf []byte
				for seq := uint32(0); time.Now().Before(stop); seq++ {
					size := 16 << rng.IntN(13) // 16 B .. 64 KiB
					data := make([]byte, size)
					for i := 8; i < size; i++ {
						data[i] = byte(seq + uint32(i))
					}
					binary.BigEndian.PutUint32(data, seq)
					binary.BigEndian.PutUint32(data[4:], crc32.ChecksumIEEE(data[8:]))
					buf, _ = frame.AppendMessage(buf[:0], cl.ID(1+seq%1000), frame.TypeExecStdin, frame.ExecStdin{Data: data})
					sent <- seq
					if _, err := cl.Conn.Write(buf); err != nil {
						fail(err)
						return
					}
				}
			}()
			for seq := range sent {
				raw, err := cl.Recv(10 * time.Second)
				if err != nil {
					fail(err)
					return
				}
				m, err := frame.Decode(raw)
				var in frame.ExecStdin
				if err == nil {
					err = m.Into(&in)
				}
				if err != nil || len(in.Data) < 8 || binary.BigEndian.Uint32(in.Data) != seq ||
					binary.BigEndian.Uint32(in.Data[4:]) != crc32.ChecksumIEEE(in.Data[8:]) {
					fail(errorf("streamer %d: frame %d lost, reordered or corrupted", w, seq))
					return
				}
				frames.Add(1)
			}
		}()
	}

	// One latency client: one small frame outstanding at a time.
	var lat []time.Duration
	wg.Add(1)
	go func() {
		defer wg.Done()
		cl, err := e.DialErr(5 * time.Second)
		if err != nil {
			fail(err)
			return
		}
		defer cl.Conn.Close()
		f, _ := frame.AppendMessage(nil, cl.ID(1), frame.TypeExecStdin, frame.ExecStdin{Data: make([]byte, 48)})
		for time.Now().Before(stop) {
			t0 := time.Now()
			if _, err := cl.Conn.Write(f); err != nil {
				fail(err)
				return
			}
			if got, err := cl.Recv(10 * time.Second); err != nil || string(got) != string(f) {
				fail(errorf("latency client: bad echo: %v", err))
				return
			}
			lat = append(lat, time.Since(t0))
			frames.Add(1)
		}
	}()

	// Churners: connect, a few round trips, leave (some mid-frame).
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(stop); i++ {
				cl, err := e.DialErr(5 * time.Second)
				if err != nil {
					fail(err)
					return
				}
				f, _ := frame.AppendMessage(nil, cl.ID(1), frame.TypeExecStdin, frame.ExecStdin{Data: []byte{byte(w), byte(i)}})
				for range 3 {
					cl.Conn.Write(f)
					if got, err := cl.Recv(10 * time.Second); err != nil || string(got) != string(f) {
						fail(errorf("churner: bad echo: %v", err))
						cl.Conn.Close()
						return
					}
					frames.Add(1)
				}
				if i%2 == 0 {
					cl.Conn.Write(f[:len(f)/2])
				}
				cl.Conn.Close()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	cancel()
	<-runDone
	slices.Sort(lat)
	p999 := time.Duration(0)
	if len(lat) > 0 {
		p999 = lat[len(lat)*999/1000]
	}
	s := r.Stats()
	t.Logf("soak %v: %d frames checked end to end (%d to guest, %d to clients, %.0f MB each way), %d clients; p99.9 round trip %v; peak RSS %s; fds %d → %d",
		soakFor, frames.Load(), s.FramesToGuest, s.FramesToClient, float64(s.BytesToGuest)/1e6, s.ClientsAccepted, p999, peakRSS(), fds0, openFDs(t))
	if s.ProtocolErrors != 0 || s.Evictions != 0 {
		t.Fatalf("unexpected protocol errors %d / evictions %d", s.ProtocolErrors, s.Evictions)
	}
}

type soakError string

func (e soakError) Error() string { return string(e) }

func errorf(format string, a ...any) error {
	return soakError(strings.TrimSpace(fmt.Sprintf(format, a...)))
}

func peakRSS() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "?"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmHWM:") {
			return strings.TrimSpace(strings.TrimPrefix(l, "VmHWM:"))
		}
	}
	return "?"
}
