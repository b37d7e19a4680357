package frame

import (
	"bytes"
	"encoding/hex"
	"math"
	"testing"
)

func TestSlotRange05(t *testing.T) {
	for _, c := range []struct {
		k          int
		start, end uint32
	}{
		{0, 1, 33554431},
		{1, 33554432, 67108862},
		{127, 4261412738, 4294967168},
	} {
		s, e := SlotRange05(c.k)
		if s != c.start || e != c.end {
			t.Errorf("slot %d: [%d, %d), want [%d, %d)", c.k, s, e, c.start, c.end)
		}
	}
	// The ranges are disjoint and in order; each slot owns step-1 ids, and
	// the multiples of the step, like id 0, belong to no slot.
	prevEnd := uint32(0)
	for k := range MaxClients05 {
		s, e := SlotRange05(k)
		if s != prevEnd+1 || e-s != Step05-1 || s%Step05 != 1 || e%Step05 != 0 {
			t.Fatalf("slot %d: [%d, %d) after %d", k, s, e, prevEnd)
		}
		prevEnd = e
	}
	if prevEnd != MaxClients05*Step05 || uint64(MaxClients05)*uint64(Step05) > math.MaxUint32 {
		t.Fatalf("last range ends at %d", prevEnd)
	}
	for _, k := range []int{-1, MaxClients05} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("SlotRange05(%d) did not panic", k)
				}
			}()
			SlotRange05(k)
		}()
	}
}

func TestHandshakeBytes(t *testing.T) {
	if got := hex.EncodeToString(AppendHandshake04([]byte{9}, 1)); got != "090fffffff" {
		t.Errorf("0.4 slot 1: %s", got)
	}
	if got := hex.EncodeToString(AppendHandshake04(nil, 0)); got != "00000000" {
		t.Errorf("0.4 slot 0: %s", got)
	}
	// Slot 1: [33554432, 67108862) = [0x02000000, 0x03fffffe).
	b := AppendHandshake05([]byte{9}, 1)
	if got := hex.EncodeToString(b); got != "0902000000"+"03fffffe" {
		t.Errorf("0.5 slot 1: %s", got)
	}
	for k := range MaxClients05 {
		b := AppendHandshake05(nil, k)
		s, e, err := ParseHandshake05(b)
		ws, we := SlotRange05(k)
		if len(b) != HandshakeSize05 || err != nil || s != ws || e != we {
			t.Fatalf("slot %d: %x -> %d %d %v", k, b, s, e, err)
		}
	}
	for name, b := range map[string][]byte{
		"short":    {0, 0, 0, 1, 0, 0, 0},
		"id 0":     {0, 0, 0, 0, 0, 0, 0, 9},
		"empty":    {0, 0, 0, 5, 0, 0, 0, 5},
		"reversed": {0, 0, 0, 9, 0, 0, 0, 5},
	} {
		if s, e, err := ParseHandshake05(b); err == nil {
			t.Errorf("%s: accepted [%d, %d)", name, s, e)
		}
	}
	// A 0.4 greeting read as a 0.5 one: slot 0's [0] followed by the ready
	// frame's length prefix is [0, n), which holds id 0 and is refused.
	ready, _ := AppendMessage(AppendHandshake04(nil, 0), 0, TypeReady, Ready{})
	if _, _, err := ParseHandshake05(ready); err == nil {
		t.Error("0.4 greeting parsed as a 0.5 one")
	}
	if !bytes.Equal(AppendHandshake05(nil, 0), []byte{0, 0, 0, 1, 0x01, 0xff, 0xff, 0xff}) {
		t.Error("0.5 slot 0 bytes")
	}
}
