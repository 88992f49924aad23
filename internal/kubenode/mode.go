package kubenode

import (
	"fmt"
	"strings"
)

// ModeLabel is the Node label that picks the agent's mode per node.
const ModeLabel = "scx-slo.io/mode"

// Mode is what the node label asks of the agent.
type Mode string

const (
	// ModeUnset: no label; the command-line flags decide (--enforce).
	ModeUnset Mode = ""
	// ModeOff: serve only the exporter's own metrics, load no BPF.
	ModeOff Mode = "off"
	// ModeObserve: the tracer only; a pinned scheduler is removed, as
	// with --enforce=false.
	ModeObserve Mode = "observe"
	// ModeEnforce: as --enforce.
	ModeEnforce Mode = "enforce"
)

// ParseMode reads the label's value; an unknown value is a *ModeError
// naming the label and the value.
func ParseMode(v string) (Mode, error) {
	switch m := Mode(strings.TrimSpace(v)); m {
	case ModeUnset, ModeOff, ModeObserve, ModeEnforce:
		return m, nil
	}
	return ModeUnset, &ModeError{Value: v}
}

// ModeError is an unknown value of the mode label; the agent logs it and
// carries on as if the label were absent.
type ModeError struct{ Value string }

func (e *ModeError) Error() string {
	return fmt.Sprintf("node label %s=%q: must be off, observe or enforce", ModeLabel, e.Value)
}

// modeOf reads the mode from a Node's labels.
func modeOf(labels map[string]string) (Mode, error) { return ParseMode(labels[ModeLabel]) }
