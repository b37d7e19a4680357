package bufpool

import (
	"sync"
	"testing"
)

func TestBudgetParent(t *testing.T) {
	host := NewBudget(100, nil)
	a, b := NewBudget(80, host), NewBudget(80, host)
	if !a.Take(60) || b.Take(60) {
		t.Fatal("the parent's bound did not refuse the second relay's 60 of 100")
	}
	if b.Used() != 0 || host.Used() != 60 || b.Refused() != 1 {
		t.Fatalf("a refused Take charged something: b %d host %d refused %d", b.Used(), host.Used(), b.Refused())
	}
	if a.Take(30) {
		t.Fatal("a took past its own bound of 80")
	}
	a.Give(60)
	if !b.Take(60) || host.Used() != 60 || a.Used() != 0 {
		t.Fatalf("after Give: host %d a %d", host.Used(), a.Used())
	}
	var nilBudget *Budget
	if !nilBudget.Take(1<<40) || nilBudget.Used() != 0 {
		t.Fatal("a nil budget refused or counted")
	}
	nilBudget.Give(1)
}

// TestBudgetConcurrent: relays on different loop threads share a host
// budget; whatever the interleaving, it never passes its bound and ends
// where it started.
func TestBudgetConcurrent(t *testing.T) {
	host := NewBudget(1000, nil)
	var wg sync.WaitGroup
	var over sync.Once
	for range 8 {
		child := NewBudget(400, host)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20000 {
				if child.Take(100) {
					if host.Used() > host.Max() || child.Used() > child.Max() {
						over.Do(func() { t.Error("a budget passed its bound") })
					}
					child.Give(100)
				}
			}
			if child.Used() != 0 {
				t.Errorf("child ends with %d used", child.Used())
			}
		}()
	}
	wg.Wait()
	if host.Used() != 0 {
		t.Fatalf("host budget ends with %d used", host.Used())
	}
	if host.Refused() == 0 {
		t.Log("no Take was refused by the host: the interleaving never filled it")
	}
}
