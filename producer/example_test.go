package producer_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/callstream/callstream/pkg/unpod"
	"github.com/callstream/callstream/producer"
	"github.com/callstream/callstream/schemas"
)

// Embedded mode, as `callstream run` wires it: the in-process bus, a state
// file, and a line per event.
func Example_embedded() {
	ctx := context.Background()
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	client, err := unpod.New(unpod.Config{BaseURL: "http://127.0.0.1:8089", Token: "sim-token"})
	if err != nil {
		panic(err)
	}
	bus := gochannel.NewGoChannel(gochannel.Config{}, watermill.NewSlogLogger(logger))
	p, err := producer.New(producer.DefaultConfig(), producer.Deps{
		Source:     client,
		Publisher:  bus,
		Topic:      schemas.TopicName(schemas.DefaultTopicPrefix, schemas.CallsTopic),
		DLQTopic:   schemas.TopicName(schemas.DefaultTopicPrefix, schemas.DLQTopic),
		Store:      producer.NewFileStore(filepath.Join(".callstream", "producer.json")),
		Logger:     logger,
		Registerer: prometheus.NewRegistry(),
		OnEvent: func(e *schemas.CallEvent) {
			fmt.Printf("%s %s %s rev %d %s\n", e.Org, e.Type(), e.CallKey, e.Revision, e.CallStatus)
		},
	})
	if err != nil {
		panic(err)
	}
	if err := p.Run(ctx); err != nil { // until ctx ends; then state is saved
		panic(err)
	}
	st := p.Stats()
	fmt.Println("published", st.Published, "duplicates dropped", st.Duplicates)
}
