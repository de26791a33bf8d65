package producer

import (
	"context"
	"errors"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/callstream/callstream/pkg/unpod"
)

// noSource is an API that is never called.
type noSource struct{}

func (noSource) CallLogs(context.Context, unpod.Query) (*unpod.Page, error) {
	return nil, errors.New("noSource: not called in this test")
}

func (noSource) Organizations(context.Context) ([]unpod.Organization, error) {
	return nil, errors.New("noSource: not called in this test")
}

// nopPublisher accepts and drops messages.
type nopPublisher struct{}

func (nopPublisher) Publish(string, ...*message.Message) error { return nil }
func (nopPublisher) Close() error                              { return nil }
