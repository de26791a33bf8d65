package schemas

import (
	"bytes"
	"fmt"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// Validator checks event payloads against the embedded JSON Schemas. It is
// safe for concurrent use; build one and share it.
type Validator struct {
	call, alert *jsonschema.Schema
}

// NewValidator compiles the embedded schemas.
func NewValidator() (*Validator, error) {
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	load := func(name string) (*jsonschema.Schema, error) {
		data, err := Files.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("schemas: read %s: %w", name, err)
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("schemas: parse %s: %w", name, err)
		}
		if err := c.AddResource(name, doc); err != nil {
			return nil, fmt.Errorf("schemas: add %s: %w", name, err)
		}
		s, err := c.Compile(name)
		if err != nil {
			return nil, fmt.Errorf("schemas: compile %s: %w", name, err)
		}
		return s, nil
	}
	var v Validator
	var err error
	if v.call, err = load("call_event.v1.json"); err != nil {
		return nil, err
	}
	if v.alert, err = load("alert_event.v1.json"); err != nil {
		return nil, err
	}
	return &v, nil
}

// ValidateCall checks a call event's JSON against call_event.v1.json.
func (v *Validator) ValidateCall(data []byte) error { return validate(v.call, "call event", data) }

// ValidateAlert checks an alert event's JSON against alert_event.v1.json.
func (v *Validator) ValidateAlert(data []byte) error { return validate(v.alert, "alert event", data) }

func validate(s *jsonschema.Schema, what string, data []byte) error {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("%s is not JSON: %w", what, err)
	}
	if err := s.Validate(doc); err != nil {
		return fmt.Errorf("%s does not match its schema: %w", what, err)
	}
	return nil
}
