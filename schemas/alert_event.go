package schemas

import "time"

// Alert states.
const (
	AlertFiring   = "firing"
	AlertResolved = "resolved"
)

// AlertEvent is the value of a record on the alerts topic: one transition of
// one alert. It is validated by alert_event.v1.json.
type AlertEvent struct {
	AlertID        string            `json:"alert_id"`
	Rule           string            `json:"rule"`
	Org            string            `json:"org"`
	Group          map[string]string `json:"group"`
	State          string            `json:"state"`
	StartsAt       time.Time         `json:"starts_at"`
	EndsAt         *time.Time        `json:"ends_at"`
	Value          float64           `json:"value"`
	Threshold      float64           `json:"threshold"`
	Window         string            `json:"window"`
	SampleEventIDs []string          `json:"sample_event_ids"`
	Labels         map[string]string `json:"labels,omitempty"`
	Annotations    map[string]string `json:"annotations,omitempty"`
}

// Type returns the alert's ce_type.
func (a *AlertEvent) Type() string {
	if a.State == AlertResolved {
		return TypeAlertResolved
	}
	return TypeAlertFiring
}
