package frame

import "github.com/fxamacker/cbor/v2"

// Decoder limits. Peek enforces the same or tighter ones, so that whatever
// it accepts the full decoder accepts too.
const (
	maxNestedLevels  = 32
	maxContainerSize = 131072 // elements of an array, pairs of a map
)

// The modes are built once: building one validates options and allocates.
var (
	encMode cbor.EncMode
	decMode cbor.DecMode
)

func init() {
	var err error
	encMode, err = cbor.EncOptions{
		// The original writes every integer in its shortest form and keeps
		// struct fields in declaration order, which is the field order of
		// its serde structs.
		Sort: cbor.SortNone,
		// A Go nil slice is Rust's empty Vec: [] and h'', never null.
		NilContainers: cbor.NilContainerAsEmpty,
		IndefLength:   cbor.IndefLengthForbidden,
	}.EncMode()
	if err != nil {
		panic("frame: cbor encoder options: " + err.Error())
	}
	decMode, err = cbor.DecOptions{
		// serde rejects a repeated field; a repeated key is also how two
		// parsers are made to disagree. Reject every repeated key.
		DupMapKey: cbor.DupMapKeyEnforcedAPF,
		// serde matches field names exactly, so must we ("T" is not "t").
		FieldNameMatching: cbor.FieldNameMatchingCaseSensitive,
		MaxNestedLevels:   maxNestedLevels,
		MaxArrayElements:  maxContainerSize,
		MaxMapPairs:       maxContainerSize,
		UTF8:              cbor.UTF8RejectInvalid,
	}.DecMode()
	if err != nil {
		panic("frame: cbor decoder options: " + err.Error())
	}
}
