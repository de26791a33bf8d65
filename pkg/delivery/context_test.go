package delivery

import (
	"context"
	"errors"
	"testing"
)

type key struct{}

func TestContext(t *testing.T) {
	parent, stop := context.WithCancel(context.WithValue(context.Background(), key{}, "v"))
	c := NewContext(parent)
	stop() // the parent's cancellation is not the message's
	if c.Err() != nil {
		t.Fatalf("Err = %v before Cancel", c.Err())
	}
	if c.Value(key{}) != "v" {
		t.Fatal("the Subscribe context's values are lost")
	}
	if _, ok := c.Deadline(); ok {
		t.Fatal("a delivery has no deadline")
	}
	c.Cancel()
	c.Cancel()
	<-c.Done()
	if !errors.Is(c.Err(), context.Canceled) {
		t.Fatalf("Err = %v after Cancel", c.Err())
	}
}
