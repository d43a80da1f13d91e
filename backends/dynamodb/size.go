package dynamodb

import (
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// DynamoDB refuses an item larger than 400 KB, counted as its attribute
// names plus their values (the "item size" rules of the DynamoDB developer
// guide). wp's items are small, except a job item's given-up index
// (wpGivenUp), which grows by a part id per given-up part of a job with a
// large tolerance. So that the item can always still take the write that
// fails the job when the index can list no more, CreateJob records how
// many ids the index may hold (wpGivenUpMax), and the give-up that would
// pass it fails the job instead of counting (countGivenUp).
const (
	maxItemBytes = 400 * 1024
	// givenUpReserve is the room kept free on a job item with a full
	// index: for what is written on it later (the error and its reason,
	// the reduce claim and flags, the failure marks) and for the gap
	// between this estimate and DynamoDB's own count.
	givenUpReserve = 8 * 1024
)

// givenUpRoom is how many part ids of a job of total parts the given-up
// index of job item it may list: the bytes left under maxItemBytes by the
// item as created and givenUpReserve, at the size of the largest part id.
func givenUpRoom(it item, total int64) int64 {
	room := maxItemBytes - givenUpReserve - itemSize(it) - len(attrGivenUp)
	return max(0, int64(room)/int64(numSize(strconv.FormatInt(total-1, 10))))
}

// itemSize estimates the size of it as DynamoDB counts it.
func itemSize(it item) int {
	n := 0
	for name, v := range it {
		n += len(name) + avSize(v)
	}
	return n
}

// avSize estimates the size of one value: strings and binaries by their
// bytes, a number by about one byte per two significant digits plus one,
// a boolean or null one byte, a list or map 3 bytes plus one per element
// plus the elements (and a map's keys), a set the sum of its members.
func avSize(v types.AttributeValue) int {
	switch v := v.(type) {
	case *types.AttributeValueMemberS:
		return len(v.Value)
	case *types.AttributeValueMemberN:
		return numSize(v.Value)
	case *types.AttributeValueMemberB:
		return len(v.Value)
	case *types.AttributeValueMemberBOOL, *types.AttributeValueMemberNULL:
		return 1
	case *types.AttributeValueMemberSS:
		n := 0
		for _, s := range v.Value {
			n += len(s)
		}
		return n
	case *types.AttributeValueMemberNS:
		n := 0
		for _, s := range v.Value {
			n += numSize(s)
		}
		return n
	case *types.AttributeValueMemberBS:
		n := 0
		for _, b := range v.Value {
			n += len(b)
		}
		return n
	case *types.AttributeValueMemberL:
		n := 3
		for _, e := range v.Value {
			n += 1 + avSize(e)
		}
		return n
	case *types.AttributeValueMemberM:
		n := 3
		for k, e := range v.Value {
			n += 1 + len(k) + avSize(e)
		}
		return n
	}
	return 0
}

// numSize is the size of a number written as s: its significant digits,
// two to a byte, plus one.
func numSize(s string) int {
	s = strings.TrimLeft(s, "-+0")
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		s = s[:i]
	}
	s = strings.Replace(s, ".", "", 1)
	s = strings.TrimRight(strings.TrimLeft(s, "0"), "0")
	return (len(s)+1)/2 + 1
}
