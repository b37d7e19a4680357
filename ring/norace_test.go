//go:build !race

package ring

// streamBytes is what each stream test moves; see race_test.go.
const streamBytes = 1 << 30
