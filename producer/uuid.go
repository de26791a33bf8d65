package producer

import "github.com/google/uuid"

func parseUUID(s string) (uuid.UUID, error) { return uuid.Parse(s) }

// mustUUID parses an id this package formatted itself.
func mustUUID(s string) uuid.UUID {
	id, _ := uuid.Parse(s)
	return id
}
