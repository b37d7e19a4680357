package bufpool

import "sync/atomic"

// Budget caps the bytes a group of buffers may hold beyond what each is
// given up front: a relay's client output buffers, or every relay of a host.
// A Budget may have a parent, which every Take is also charged to. Take and
// Give are safe for concurrent use, because a host-wide parent is charged
// by relays on different loop threads; a relay's own budget is only ever
// touched by its loop, where the atomics cost no contention.
type Budget struct {
	max     int64
	used    atomic.Int64
	parent  *Budget
	refused atomic.Uint64
}

// NewBudget returns a budget of max bytes charged also to parent, if any.
func NewBudget(max int64, parent *Budget) *Budget { return &Budget{max: max, parent: parent} }

// Take charges n bytes, or reports false (charging nothing) if that would
// pass this budget's or a parent's bound. A nil budget takes anything.
func (b *Budget) Take(n int64) bool {
	if b == nil || n == 0 {
		return true
	}
	for {
		used := b.used.Load()
		if used+n > b.max {
			b.refused.Add(1)
			return false
		}
		if b.used.CompareAndSwap(used, used+n) {
			break
		}
	}
	// Charged here first, so a concurrent Take never sees room this one is
	// about to use; given back if the parent refuses.
	if !b.parent.Take(n) {
		b.used.Add(-n)
		b.refused.Add(1)
		return false
	}
	return true
}

// Give returns n bytes taken before.
func (b *Budget) Give(n int64) {
	if b == nil || n == 0 {
		// Nothing to give: touch no cache line another loop shares.
		return
	}
	b.used.Add(-n)
	b.parent.Give(n)
}

// Used, Max and Refused report the budget's state (zero for a nil
// budget). Safe from any goroutine.
func (b *Budget) Used() int64 {
	if b == nil {
		return 0
	}
	return b.used.Load()
}

func (b *Budget) Max() int64 {
	if b == nil {
		return 0
	}
	return b.max
}

func (b *Budget) Refused() uint64 {
	if b == nil {
		return 0
	}
	return b.refused.Load()
}
