package kafkabus

import (
	"errors"
	"fmt"
	"testing"

	"github.com/segmentio/kafka-go"
)

func TestCoordinatorNotReady(t *testing.T) {
	for err, want := range map[error]bool{
		kafka.NotCoordinatorForGroup:                         true,
		fmt.Errorf("wrapped: %w", kafka.GroupLoadInProgress): true,
		kafka.GroupCoordinatorNotAvailable:                   true,
		kafka.UnknownTopicOrPartition:                        false,
		errors.New("connection refused"):                     false,
	} {
		if got := coordinatorNotReady(err); got != want {
			t.Errorf("coordinatorNotReady(%v) = %v, want %v", err, got, want)
		}
	}
}
