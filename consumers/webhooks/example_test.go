package webhooks_test

import (
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/callstream/callstream/consumers/webhooks"
)

// A receiver written in Go checks each delivery on the raw body before
// parsing it, and deduplicates on webhook-id.
func ExampleVerify() {
	secret := "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	handler := func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, "read body", http.StatusBadRequest)
			return
		}
		err = webhooks.Verify(secret, r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp"),
			body, r.Header.Get("webhook-signature"), time.Now(), 5*time.Minute)
		if err != nil {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
	_ = handler

	// The Standard Webhooks specification's test vector.
	err := webhooks.Verify(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", []byte(`{"test": 2432232314}`),
		"v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", time.Unix(1614265330, 0), 5*time.Minute)
	fmt.Println(err)
	// Output: <nil>
}
