# The project's entry points. `make test` is what CI runs (via .ci/run).
GO        ?= go
PKGS      ?= ./...
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
FUZZTIME  ?= 30s
SHORTFUZZ ?= 2s
BENCHCOUNT ?= 6
BENCHTIME ?= 1s
HOSTBENCHCOUNT ?= 3
HOST10K   ?= 0
SOAKTIME  ?= 10m
OUT       ?= out

.PHONY: vm-image run-vm vm-test bench-vm interop bench-host
.PHONY: all build test vet fmt-check tidy-check staticcheck deps-check unit cover fuzz-seeds fuzz soak bench profile run clean

all: build

build:
	$(GO) build -o bin/relay ./cmd/relay
	$(GO) build -o bin/relay-baseline ./cmd/relay-baseline

# Static checks, then the race tests (which also run every fuzz target's seed
# corpus), then a short coverage-guided run of every fuzz target, then the
# slow end-to-end steps: the microVM, and upstream's published clients
# against the relay; each step's duration is printed.
TEST_STEPS ?= vet fmt-check tidy-check staticcheck deps-check unit fuzz-seeds vm-test interop
test:
	@bash scripts/steps.sh $(TEST_STEPS)

vet:
	$(GO) vet $(PKGS)

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# go.mod and go.sum are exactly what go mod tidy makes.
tidy-check:
	@cp go.mod /tmp/go.mod.$$$$ && cp go.sum /tmp/go.sum.$$$$; \
	$(GO) mod tidy; \
	if ! cmp -s go.mod /tmp/go.mod.$$$$ || ! cmp -s go.sum /tmp/go.sum.$$$$; then \
		diff -u /tmp/go.mod.$$$$ go.mod; diff -u /tmp/go.sum.$$$$ go.sum | head -20; \
		cp /tmp/go.mod.$$$$ go.mod; cp /tmp/go.sum.$$$$ go.sum; rm -f /tmp/go.*.$$$$; \
		echo "go mod tidy changes go.mod or go.sum: run it and commit"; exit 1; fi; \
	rm -f /tmp/go.*.$$$$

# staticcheck at a pinned version, through the module proxy.
staticcheck:
	$(GO) run $(STATICCHECK) ./...

# The relay binary links only what the relay uses: no benchmark code, no
# plotting, no eBPF.
deps-check:
	@bad=$$($(GO) list -deps ./cmd/relay | grep -E 'gonum\.org|cilium/ebpf|/bench($$|/)' || true); \
	if [ -n "$$bad" ]; then echo "cmd/relay links:"; echo "$$bad"; exit 1; fi

unit:
	$(GO) test -race -count=1 -timeout 15m $(PKGS)
	@# Allocation counts, heap and RSS are only meaningful without the race detector.
	$(GO) test -count=1 -run 'Allocs|TestMemoryBound|RelayHeap' $(PKGS)

# Per-package statement coverage of the whole test suite (no -race): the
# share of each package's statements that any test runs, the end-to-end
# runs of the relay binary included (cmd/relay's tests build it with
# -cover). Raw data stays in $(OUT)/covdata, the test output in
# $(OUT)/cover.log. TestMemoryBound is left out: its flood must reach
# throughput figures that the instrumented binary misses about one run in
# three, and RSS is no concern of coverage.
cover:
	@rm -rf $(OUT)/covdata && mkdir -p $(OUT)/covdata
	@$(GO) test -count=1 -timeout 15m -cover -coverpkg=./... -skip '^TestMemoryBound$$' $(PKGS) -args -test.gocoverdir=$(abspath $(OUT)/covdata) >$(OUT)/cover.log 2>&1 \
		|| { tail -40 $(OUT)/cover.log; exit 1; }
	@$(GO) tool covdata percent -i=$(OUT)/covdata | sed 's/^[[:space:]]*//' | awk -F'[[:space:]]+' '{printf "%-55s %s\n", $$1, $$3}' | sort
	@$(GO) tool covdata textfmt -i=$(OUT)/covdata -o=$(OUT)/cover.out && $(GO) tool cover -func=$(OUT)/cover.out | tail -1

fuzz-seeds:
	bash scripts/fuzz.sh $(SHORTFUZZ)

# Upstream microsandbox's published Node SDK (npm, pinned in
# interop/interop_test.go, cached under ~/.cache/agentrelay-interop) runs
# exec cases against bin/relay built from this tree, in each handshake form
# the relay offers. Skipped only when npm cannot reach its registry.
interop:
	RELAY_INTEROP=1 $(GO) test -count=1 -v -run '^TestUpstreamClients$$' ./interop/

# Longer fuzzing: every target for FUZZTIME each.
fuzz:
	bash scripts/fuzz.sh $(FUZZTIME)

# Long runs without the race detector: TestSoak (mixed checksummed traffic,
# peak RSS, fds) and TestChurn (clients coming and going; fds, goroutines and
# heap before and after), SOAKTIME each. The relay's log goes to
# $(OUT)/soak.log, the tests' results to the terminal.
soak:
	@mkdir -p $(OUT)
	@$(GO) test -count=1 -timeout 0 -v -run '^(TestSoak|TestChurn)$$' ./relay/ \
		-args -soak=$(SOAKTIME) -churn=$(SOAKTIME) >$(OUT)/soak.log 2>&1; rc=$$?; \
	grep -E '^(--- |    [a-z_]+_test\.go:|PASS|FAIL|ok)' $(OUT)/soak.log; exit $$rc

# Both relays and the floors on both paths to the guest (in-process echo,
# external echo process on unix:), alternating rounds, benchstat side by
# side, charts and issue 8's target table under $(OUT)/; then the host
# daemon's targets (bench-host).
bench: build
	BENCHTIME=$(BENCHTIME) bash scripts/bench.sh $(OUT) $(BENCHCOUNT)
	bash scripts/bench-host.sh $(OUT) $(HOSTBENCHCOUNT)

# Issue 12's host daemon targets alone (also the last part of `bench`):
# `relay host` against lone `relay serve` processes, HOSTBENCHCOUNT rounds,
# issue 12's table in $(OUT)/targets-host.md. HOST10K=1 adds 10,000 idle
# sandboxes (a minute or more; root, to raise RLIMIT_NOFILE).
bench-host: build
	HOST10K=$(HOST10K) bash scripts/bench-host.sh $(OUT) $(HOSTBENCHCOUNT)

# CPU and allocation profiles of the reactor under the stream and fan-in
# workloads; PROFGUEST=unix for the socket-guest path.
profile: build
	bash scripts/profile.sh $(OUT)

# The relay's main job on the embedded default guest (no VM needed), with
# the debug endpoint that `relay stats --debug-addr` reads.
RUN_DEBUG_ADDR ?= 127.0.0.1:6060
run: build
	./bin/relay serve --socket /tmp/agentrelay/agent.sock --guest builtin --exec-log /tmp/agentrelay --debug-addr $(RUN_DEBUG_ADDR)

# The microVM image under $(OUT)/vm: Debian's cloud kernel, an initramfs
# with agentd as /init and busybox, and a manifest of package versions.
# Cached: a second run does nothing.
vm-image:
	OUT=$(OUT)/vm bash scripts/vm-image.sh

# The relay in front of a real microVM (QEMU, TCG unless KVM can run it),
# in the foreground; /tmp/agentrelay-vm/agent.sock, exec.log beside it.
run-vm: build vm-image
	IMG=$(OUT)/vm bash scripts/run-vm.sh

# End-to-end tests against the real VM, booted once for the package. Not
# part of `unit`: under -race on 2 cores TCG and the race detector starve
# each other's timing, so this runs after it.
vm-test: vm-image
	RELAY_VM_TESTS=1 RELAY_VM_IMAGE=$(CURDIR)/$(OUT)/vm $(GO) test -count=1 -timeout 10m ./vmtest/

# Round trip and 64 KiB stream through the VM, via the relay and straight
# to QEMU's console socket (the floor), alternating: BENCHCOUNT runs, each
# booting the VM once. TCG figures unless KVM.
bench-vm: vm-image
	@for i in $$(seq $(BENCHCOUNT)); do \
		RELAY_VM_TESTS=1 RELAY_VM_IMAGE=$(CURDIR)/$(OUT)/vm $(GO) test -count=1 -run '^$$' -bench . -benchtime 2s ./vmtest/ \
			2>&1 | grep -E '^(Benchmark|vmtest:|FAIL|ok)' || exit 1; \
	done

clean:
	rm -rf bin $(OUT)
