// Package slovalue parses the three values of an SLO (latency budget,
// importance, target) from their written form. The file parser
// (internal/sloconfig), pod annotations and SLOPolicy objects
// (internal/slopolicy) all call it, so one value is accepted or rejected
// everywhere with the same words. Errors carry only the problem; callers
// put the field and the value in front ("slos[0].target: \"2\": ...").
package slovalue

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Limits and defaults (docs/slo-config.md). The SLOPolicy CRD states the
// same bounds in its schema; a test in api/v1alpha1 keeps them in step.
const (
	DefaultImportance = 100
	MinImportance     = 1
	MaxImportance     = 1000
	DefaultTarget     = 0.99
	MaxLatencyBudget  = 10 * time.Second
)

// Messages, shared with the CRD's CEL messages (api/v1alpha1).
const (
	UnitHint        = "add a unit: ns, us, ms or s (e.g. 2ms, 500us, 1.5ms)"
	MsgPlainNumber  = "a plain number is ambiguous; " + UnitHint
	MsgNotDuration  = "not a duration; " + UnitHint
	MsgBudgetZero   = "must be greater than 0"
	MsgTargetRange  = "must be a fraction greater than 0 and less than 1 (e.g. 0.99)"
	MsgTargetPercnt = "write a fraction, not a percentage (e.g. 0.99 for 99%)"
)

// MsgBudgetMax is the message for a budget above MaxLatencyBudget.
var MsgBudgetMax = fmt.Sprintf("must be at most %v", MaxLatencyBudget)

// MsgImportanceRange is the message for an importance that is not an
// integer in range.
var MsgImportanceRange = fmt.Sprintf("must be an integer from %d to %d", MinImportance, MaxImportance)

// decimal is the syntax of a plain decimal number (YAML's float syntax
// without .inf/.nan): what ParseTarget accepts and what ParseLatencyBudget
// rejects as a unitless number.
var decimal = regexp.MustCompile(`^[-+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?$`)

// ParseLatencyBudget reads a Go duration with a unit ("2ms", "1.5ms",
// "500us"), greater than 0 and at most MaxLatencyBudget.
func ParseLatencyBudget(s string) (time.Duration, error) {
	if decimal.MatchString(s) {
		return 0, errors.New(MsgPlainNumber)
	}
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		return 0, errors.New(MsgNotDuration)
	case d <= 0:
		return 0, errors.New(MsgBudgetZero)
	case d > MaxLatencyBudget:
		return 0, errors.New(MsgBudgetMax)
	}
	return d, nil
}

// ParseImportance reads a decimal integer from MinImportance to
// MaxImportance.
func ParseImportance(s string) (int, error) {
	i, err := strconv.ParseInt(s, 10, 64)
	if err != nil || i < MinImportance || i > MaxImportance {
		return 0, errors.New(MsgImportanceRange)
	}
	return int(i), nil
}

// ParseTarget reads a decimal fraction strictly between 0 and 1 ("0.99",
// ".5", "9.9e-1"). Percentages, hexadecimal, inf and nan are rejected.
func ParseTarget(s string) (float64, error) {
	if strings.HasSuffix(s, "%") {
		return 0, errors.New(MsgTargetPercnt)
	}
	if !decimal.MatchString(s) {
		return 0, errors.New(MsgTargetRange)
	}
	t, err := strconv.ParseFloat(s, 64)
	if err != nil || !(t > 0 && t < 1) {
		return 0, errors.New(MsgTargetRange)
	}
	return t, nil
}
