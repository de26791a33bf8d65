package kafkabus

import (
	"errors"
	"fmt"
	"net"
	"testing"

	"github.com/segmentio/kafka-go"
)

func TestRetriable(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("wrapped: %w", kafka.BrokerNotAvailable), true},
		{kafka.NotLeaderForPartition, true},
		{kafka.LeaderNotAvailable, true},
		{kafka.InvalidReplicationFactor, false},
		{kafka.TopicAuthorizationFailed, false},
		{&net.OpError{Op: "dial", Err: errors.New("refused")}, true},
		{errors.New("bad input"), false},
	}
	for _, tt := range tests {
		if got := retriable(tt.err); got != tt.want {
			t.Errorf("retriable(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}
