package bufpool

// Budget caps the bytes a group of buffers may hold beyond what each is
// given up front: a relay's client output buffers, or every relay of a host.
// A Budget may have a parent, which every Take is also charged to. Like a
// Pool it belongs to one loop.
type Budget struct {
	max, used int64
	parent    *Budget
	refused   uint64
}

// NewBudget returns a budget of max bytes charged also to parent, if any.
func NewBudget(max int64, parent *Budget) *Budget { return &Budget{max: max, parent: parent} }

// Take charges n bytes, or reports false (charging nothing) if that would
// pass this budget's or a parent's bound.
func (b *Budget) Take(n int64) bool {
	if b == nil {
		return true
	}
	if b.used+n > b.max {
		b.refused++
		return false
	}
	if !b.parent.Take(n) {
		b.refused++
		return false
	}
	b.used += n
	return true
}

// Give returns n bytes taken before.
func (b *Budget) Give(n int64) {
	if b == nil {
		return
	}
	b.used -= n
	b.parent.Give(n)
}

// Used, Max and Refused report the budget's state.
func (b *Budget) Used() int64     { return b.used }
func (b *Budget) Max() int64      { return b.max }
func (b *Budget) Refused() uint64 { return b.refused }
