package sloconfig

import (
	"errors"
	"fmt"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/scx-slo/scx-slo/internal/slovalue"
)

// Duration is a time.Duration written in YAML as a Go duration string
// ("2ms", "500us", "1.5ms"). Plain numbers are rejected because a bare
// "2" could mean seconds, milliseconds or nanoseconds.
type Duration time.Duration

// parseDuration turns a YAML scalar into a duration; the error text is
// meant to follow "field: value: " in a FieldError. Bounds are the
// caller's: UnmarshalYAML takes any duration.
func parseDuration(n *yaml.Node) (time.Duration, error) {
	if n.Kind != yaml.ScalarNode {
		return 0, fmt.Errorf("must be a duration string, not %s", describe(n))
	}
	switch n.Tag {
	case "!!str":
	case "!!int", "!!float":
		return 0, errors.New(slovalue.MsgPlainNumber)
	default:
		return 0, fmt.Errorf("must be a duration string, not %s", tagName(n.Tag))
	}
	d, err := time.ParseDuration(n.Value)
	if err != nil {
		return 0, errors.New(slovalue.MsgNotDuration)
	}
	return d, nil
}

// UnmarshalYAML accepts only duration strings with a unit.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := parseDuration(n)
	if err != nil {
		return fmt.Errorf("line %d: %q: %w", n.Line, n.Value, err)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the form time.Duration.String produces, which
// time.ParseDuration reads back exactly.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

func (d Duration) String() string { return time.Duration(d).String() }
