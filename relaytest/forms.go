package relaytest

import (
	"encoding/binary"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/agentrelay/agentrelay/frame"
	"github.com/agentrelay/agentrelay/relay"
)

// The 0.5 generation's guest side of the handshake, and clients of the
// other form.

// testInitAck: a 0.6+ guest reports core.init.resolved and waits for
// core.init.ack (id 0, {}) before it sends core.ready; the relay answers,
// then takes the ready frame, whose v = 7 makes auto choose the 0.5 form.
func testInitAck(t *testing.T, impl Impl) {
	e := Start(t, impl, Config{NoReady: true, Options: func(o *relay.Options) { o.Handshake = relay.HandshakeAuto }})
	resolved, err := frame.AppendMessageVersion(nil, 0, 7, frame.TypeInitResolved, frame.InitResolved{DefaultUser: frame.ResolvedUser{UID: 1000, GID: 1000}})
	if err != nil {
		t.Fatal(err)
	}
	e.Guest.Send(t, resolved)
	done := make(chan error, 1)
	go func() { done <- e.Server.WaitReady(t.Context()) }()
	ack := Decode(t, e.Guest.Next(t, wait))
	if ack.TypeName != "core.init.ack" || ack.ID != 0 || ack.Flags != 0 || string(ack.Payload) != "\xa0" {
		t.Fatalf("answer to core.init.resolved: id %d flags %#x %s %x, want core.init.ack {} with id 0", ack.ID, ack.Flags, ack.TypeName, ack.Payload)
	}
	ready, err := frame.AppendMessageVersion(nil, 0, 7, frame.TypeReady, frame.Ready{BootTimeNs: 1})
	if err != nil {
		t.Fatal(err)
	}
	e.Guest.Send(t, ready)
	if err := <-done; err != nil {
		t.Fatalf("WaitReady after the ack: %v", err)
	}
	if s := stats(t, e); s.Slots != relay.MaxSlots || s.Handshake != uint64(relay.Handshake05) {
		t.Fatalf("auto with a v 7 guest: %d slots, form %d; want 128 and the 0.5 form", s.Slots, s.Handshake)
	}
}

// testBadReady: a core.ready frame that cannot be decoded is an error
// naming core.ready, not a relay serving a bad handshake.
func testBadReady(t *testing.T, impl Impl) {
	e := Start(t, impl, Config{NoReady: true, Options: func(o *relay.Options) { o.ReadyTimeout = 500 * time.Millisecond }})
	// {"v": 1, "t": "core.ready", "p": <a map that ends too soon>}
	body := []byte{0xa3, 0x61, 'v', 0x01, 0x61, 't', 0x6a}
	body = append(body, "core.ready"...)
	body = append(body, 0x61, 'p', 0xa2, 0x61, 'x')
	e.Guest.Send(t, frame.AppendFrame(nil, 0, 0, body))
	err := e.Server.WaitReady(t.Context())
	if err == nil || !strings.Contains(err.Error(), "core.ready") {
		t.Fatalf("WaitReady = %v, want an error naming core.ready", err)
	}
}

// testOtherFormClient: a client that takes a 0.5 relay for a 0.4 one reads
// id_start as its offset and allocates ids past its range; the relay
// disconnects it at the first such frame, and nobody else notices.
func testOtherFormClient(t *testing.T, impl Impl) {
	if impl.form() != relay.Handshake05 {
		t.Skip("the 0.5 form's case")
	}
	e := Start(t, impl, Config{})
	by := e.Dial(t)
	conn, err := net.Dial("unix", e.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var off [4]byte
	if _, err := io.ReadFull(conn, off[:]); err != nil {
		t.Fatal(err)
	}
	offset := binary.BigEndian.Uint32(off[:])               // really id_start
	conn.Write(stdout(t, offset+frame.Step05+5, "0.4 ids")) // inside a 0.4 slot, past the 0.5 range
	conn.SetReadDeadline(time.Now().Add(wait))
	io.Copy(io.Discard, conn) // the rest of the handshake, then the close
	Eventually(t, wait, "the protocol error", func() bool { return stats(t, e).ProtocolErrors == 1 })
	in := msg(t, by.ID(1), frame.TypeExecStdin, frame.ExecStdin{Data: []byte("fine")})
	by.Send(t, in)
	sameBytes(t, "bystander's frame", e.Guest.Next(t, wait), in)
}
