package relay

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/agentrelay/agentrelay/reactor"
	"github.com/agentrelay/agentrelay/ring"
)

// ringPort serves a guest through a ring.Console: the guest produces Tx and
// consumes Rx, and the rings' wake pipes tell the loop when either moved.
type ringPort struct {
	tx, rx       *ring.Ring
	r            *Relay
	txTok, rxTok reactor.Token
	watched      bool
}

func newRingPort(c *ring.Console) *ringPort { return &ringPort{tx: c.Tx, rx: c.Rx} }

func (p *ringPort) bind(r *Relay) { p.r = r }

func (p *ringPort) register(l *reactor.Loop) error {
	var err error
	if p.txTok, err = l.Add(p.tx.DataFd(), unix.EPOLLIN, txHandler{p}); err != nil {
		return fmt.Errorf("watch guest: %w", err)
	}
	if p.rxTok, err = l.Add(p.rx.SpaceFd(), unix.EPOLLIN, rxHandler{p}); err != nil {
		l.Remove(p.txTok)
		return fmt.Errorf("watch guest ring: %w", err)
	}
	p.watched = true
	return nil
}

func (p *ringPort) deregister(l *reactor.Loop) {
	if p.watched {
		l.Remove(p.txTok)
		l.Remove(p.rxTok)
		p.watched = false
	}
}

// settle has nothing to give back: the rings are the console's.
func (p *ringPort) settle()     {}
func (p *ringPort) holds() bool { return false }

func (p *ringPort) source() guestSource { return p.tx }
func (p *ringPort) linear() bool        { return false }

// fill has nothing to do: the guest writes into the ring itself.
func (p *ringPort) fill(int) (int, error) { return 0, nil }

// The closed flag is read before the length: once closed, the producer
// writes nothing more, so an empty ring is the end.
func (p *ringPort) drained() bool { return p.tx.Closed() && p.tx.Len() == 0 }

func (p *ringPort) armRead() bool { return p.tx.ArmData() }

func (p *ringPort) writev(bufs [][]byte) (int, error) {
	total := 0
	for _, b := range bufs {
		n := p.rx.Write(b)
		total += n
		if n < len(b) {
			break
		}
	}
	return total, nil
}

func (p *ringPort) armWrite() bool   { return p.rx.ArmSpace() }
func (p *ringPort) readerGone() bool { return p.rx.ReadClosed() }
func (p *ringPort) close()           {}

// Handlers for the rings' wake pipes. Each is one pointer wide, so storing
// it in the reactor's Handler interface does not allocate.
type (
	txHandler struct{ p *ringPort }
	rxHandler struct{ p *ringPort }
)

// The wake only needs draining: whether Tx holds bytes is the ring's to
// say (armRead), not a flag's.
func (h txHandler) OnEvent(uint32) {
	h.p.tx.DrainData()
	h.p.r.kick()
}

func (h rxHandler) OnEvent(uint32) {
	h.p.rx.DrainSpace()
	h.p.r.kick()
	h.p.r.guestWritable = true
}
