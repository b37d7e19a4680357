package client_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/agentrelay/agentrelay/client"
	"github.com/agentrelay/agentrelay/frame"
	"github.com/agentrelay/agentrelay/guest"
	"github.com/agentrelay/agentrelay/relay"
	"github.com/agentrelay/agentrelay/ring"
)

// TestDialBothForms runs the real relay in each handshake form behind an
// echo guest: Dial recognises the form, the slot's range follows it, and
// ids from NextID travel both ways.
func TestDialBothForms(t *testing.T) {
	for _, tc := range []struct {
		hs        relay.Handshake
		form      string
		step      uint32
		lastSlots int
	}{
		{relay.Handshake04, "0.4", frame.Step, frame.MaxClients},
		{relay.Handshake05, "0.5", frame.Step05, frame.MaxClients05},
	} {
		t.Run(tc.form, func(t *testing.T) {
			c, err := ring.NewConsole(1 << 16)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			go guest.Echo(ctx, c, nil)
			sock := filepath.Join(t.TempDir(), "agent.sock")
			r, err := relay.New(relay.Options{Socket: sock, Console: c, Handshake: tc.hs, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			if err := r.WaitReady(ctx); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- r.Run(ctx) }()
			defer func() { r.Stop(); <-done }()

			var conns []*client.Conn
			for k := range 3 {
				cl, err := client.Dial(ctx, sock)
				if err != nil {
					t.Fatal(err)
				}
				defer cl.Close()
				conns = append(conns, cl)
				start, end := cl.Range()
				if cl.Handshake() != tc.form || cl.Slot() != k || start != uint32(k)*tc.step || end != start+tc.step {
					t.Fatalf("client %d: form %s slot %d range [%d, %d); want %s, %d, [%d, %d)",
						k, cl.Handshake(), cl.Slot(), start, end, tc.form, k, uint32(k)*tc.step, uint32(k)*tc.step+tc.step)
				}
			}
			for _, cl := range conns {
				s := cl.Subscribe(cl.NextID())
				if err := s.Send(frame.TypeExecStdin, frame.ExecStdin{Data: []byte("ping")}); err != nil {
					t.Fatal(err)
				}
				m, err := s.Recv(ctx)
				if err != nil || m.Type != frame.TypeExecStdin {
					t.Fatalf("slot %d: echo %v %v", cl.Slot(), m.TypeName, err)
				}
				s.Close()
			}
			if st := r.Stats(); st.Slots != uint64(tc.lastSlots) {
				t.Fatalf("relay reports %d slots, want %d", st.Slots, tc.lastSlots)
			}
		})
	}
}
