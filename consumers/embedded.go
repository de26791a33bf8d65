package consumers

import (
	"path/filepath"

	"github.com/ThreeDotsLabs/watermill/message"
)

// SharedSubscribe returns a RuntimeDeps.Subscribe function for embedded
// mode: every plug-in subscribes to bus (the in-process GoChannel shared
// with the producer), which the runtime leaves open when it stops. With a
// non-persistent GoChannel, start the producer only after Runtime.Ready
// reports the runtime running, or early events reach no plug-in.
func SharedSubscribe(bus message.Subscriber) func(string, Tuning) (message.Subscriber, error) {
	return func(string, Tuning) (message.Subscriber, error) { return SharedSubscriber(bus), nil }
}

// FileStates returns a RuntimeDeps.State function for embedded mode: each
// plug-in keeps its state in files under dir/<plug-in>.
func FileStates(dir string) func(plugin string) StateStore {
	return func(plugin string) StateStore { return FileState{Dir: filepath.Join(dir, plugin)} }
}
