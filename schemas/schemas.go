// Package schemas holds the contracts of the bus: the events callstream
// emits, their JSON Schemas (embedded), topic names and CloudEvents headers.
// The producer and the consumers meet only here.
package schemas

import (
	"embed"
	"strings"
)

// Files holds the JSON Schema documents, one per event type and version.
//
//go:embed *.json
var Files embed.FS

// Topic suffixes; the full name is a configurable prefix (default
// "callstream.") followed by the suffix, see TopicName.
const (
	CallsTopic         = "calls.v1"
	AlertsTopic        = "alerts.v1"
	DLQTopic           = "dlq.v1"
	ProducerStateTopic = "producer-state.v1"
	// ProducerOrgsTopic is the compacted topic whose partitions the
	// producers' consumer group shares: each organization belongs to one.
	ProducerOrgsTopic = "producer-orgs.v1"
)

// DefaultTopicPrefix is the prefix used when none is configured.
const DefaultTopicPrefix = "callstream."

// TopicName joins a prefix and a topic suffix: TopicName("callstream.", CallsTopic)
// is "callstream.calls.v1".
func TopicName(prefix, suffix string) string { return prefix + suffix }

// CloudEvents Kafka protocol binding, binary mode: the event's attributes
// travel as headers named ce_<attribute>, the data as the record value.
const (
	HeaderSpecVersion = "ce_specversion"
	HeaderID          = "ce_id"
	HeaderSource      = "ce_source"
	HeaderType        = "ce_type"
	HeaderTime        = "ce_time"
	HeaderSubject     = "ce_subject"
	HeaderContentType = "content-type"

	SpecVersion     = "1.0"
	JSONContentType = "application/json"
)

// Event types (the ce_type header).
const (
	TypeCallCreated   = "callstream.call.created.v1"
	TypeCallUpdated   = "callstream.call.updated.v1"
	TypeAlertFiring   = "callstream.alert.firing.v1"
	TypeAlertResolved = "callstream.alert.resolved.v1"
)

// Source returns the ce_source of events read from an organization.
func Source(org string) string { return "unpod/" + org }

// MajorVersion returns the major version an event type ends with ("v1" for
// "callstream.call.created.v1"), or "" when the type has none.
func MajorVersion(ceType string) string {
	i := strings.LastIndexByte(ceType, '.')
	if i < 0 || i == len(ceType)-1 || ceType[i+1] != 'v' {
		return ""
	}
	return ceType[i+1:]
}
