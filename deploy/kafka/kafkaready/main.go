// Command kafkaready waits until a Kafka broker answers a metadata request.
// deploy/kafka/kafka.sh uses it so "the broker is up" means the protocol
// answers, not merely that a port is open.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/segmentio/kafka-go"
)

func main() {
	addr := flag.String("broker", "127.0.0.1:9092", "broker address")
	timeout := flag.Duration("timeout", 90*time.Second, "give up after this long")
	flag.Parse()

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	var last error
	for {
		if last = probe(ctx, *addr); last == nil {
			return
		}
		select {
		case <-ctx.Done():
			fmt.Fprintf(os.Stderr, "kafkaready: broker %s did not answer a metadata request within %s: %v\n", *addr, *timeout, last)
			os.Exit(1)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func probe(ctx context.Context, addr string) error {
	client := &kafka.Client{Addr: kafka.TCP(addr), Timeout: 3 * time.Second}
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{})
	if err != nil {
		return err
	}
	if md.Controller.ID < 0 || len(md.Brokers) == 0 {
		return fmt.Errorf("metadata has no controller or brokers yet")
	}
	return nil
}
