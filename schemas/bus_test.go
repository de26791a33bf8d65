package schemas

import "testing"

func TestPositionRoundTrip(t *testing.T) {
	md := map[string]string{}
	want := Position{Topic: "callstream.calls.v1", Partition: 3, Offset: 1 << 40}
	SetPosition(md, want)
	got, ok := PositionOf(md)
	if !ok || got != want {
		t.Fatalf("PositionOf(SetPosition(%+v)) = %+v, %v", want, got, ok)
	}
}

func TestPositionOfIncomplete(t *testing.T) {
	for _, md := range []map[string]string{
		nil,
		{},
		{PartitionMetadata: "0"},
		{OffsetMetadata: "1"},
		{PartitionMetadata: "x", OffsetMetadata: "1"},
		{PartitionMetadata: "0", OffsetMetadata: "-4"},
		{PartitionMetadata: "-1", OffsetMetadata: "4"},
		{PartitionMetadata: "4294967296", OffsetMetadata: "4"},
	} {
		if p, ok := PositionOf(md); ok {
			t.Errorf("PositionOf(%v) = %+v, true; want no position", md, p)
		}
	}
}
