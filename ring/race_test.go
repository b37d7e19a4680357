//go:build race

package ring

// streamBytes is what each stream test moves. Under -race a gigabyte takes
// about 8 s per test on an idle two-core machine and over 20 s on a loaded
// one, so race builds move a quarter of it; plain `go test` moves 1 GiB.
const streamBytes = 256 << 20
