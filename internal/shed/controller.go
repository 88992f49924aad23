package shed

import (
	"fmt"
	"time"
)

// ControllerConfig tunes how the admitted fraction follows the overload
// bit. The zero value is not usable; start from DefaultControllerConfig.
type ControllerConfig struct {
	// Floor is the lowest admitted fraction (0 sheds everything while
	// overloaded, which must be asked for explicitly).
	Floor float64
	// Decrease multiplies the fraction once per Step while overloaded.
	Decrease float64
	// Increase is added to the fraction once per Step while clear.
	Increase float64
	// Step is how often the fraction moves: slow enough for the kernel's
	// miss rate to see the effect of the last move.
	Step time.Duration
	// EnterAfter: the bit must stay set this long before shedding starts,
	// so a single noisy read does not shed.
	EnterAfter time.Duration
	// ExitAfter: the bit must stay clear this long before the fraction
	// rises again, so the controller does not flap at the edge.
	ExitAfter time.Duration
	// BackoffWindow: if the cgroup is still overloaded this long into an
	// episode, shedding more is not helping (the pressure is not ours, or
	// the kernel needs longer), so the fraction stops falling until the
	// bit clears. 0 disables the back-off.
	BackoffWindow time.Duration
}

// DefaultControllerConfig reaches the floor from 1 in about a second of
// sustained overload and recovers fully in about two seconds of calm.
func DefaultControllerConfig() ControllerConfig {
	return ControllerConfig{
		Floor:         0.1,
		Decrease:      0.8,
		Increase:      0.05,
		Step:          100 * time.Millisecond,
		EnterAfter:    10 * time.Millisecond,
		ExitAfter:     250 * time.Millisecond,
		BackoffWindow: 3 * time.Second,
	}
}

// Validate names the first bad field and its value.
func (c ControllerConfig) Validate() error {
	switch {
	case !(c.Floor >= 0 && c.Floor <= 1):
		return fmt.Errorf("floor %v: must be between 0 and 1", c.Floor)
	case !(c.Decrease > 0 && c.Decrease < 1):
		return fmt.Errorf("decrease %v: must be greater than 0 and less than 1", c.Decrease)
	case !(c.Increase > 0 && c.Increase <= 1):
		return fmt.Errorf("increase %v: must be greater than 0 and at most 1", c.Increase)
	case c.Step <= 0:
		return fmt.Errorf("step %v: must be greater than 0", c.Step)
	case c.EnterAfter < 0:
		return fmt.Errorf("enter-after %v: must not be negative", c.EnterAfter)
	case c.ExitAfter < 0:
		return fmt.Errorf("exit-after %v: must not be negative", c.ExitAfter)
	case c.BackoffWindow < 0:
		return fmt.Errorf("backoff-window %v: must not be negative", c.BackoffWindow)
	}
	return nil
}

// Controller turns a stream of overload reads into an admitted fraction:
// AIMD (multiplicative decrease while overloaded, additive increase while
// clear) with hysteresis on both edges, a floor and a budget back-off. It
// is fed from one goroutine and is not safe for concurrent use.
type Controller struct {
	cfg      ControllerConfig
	fraction float64

	// The current run of equal reads and when it began.
	bit      bool
	bitSince time.Time
	started  bool

	shedding     bool      // hysteresis state: in an overload episode
	episodeStart time.Time // when the current episode began
	lastStep     time.Time
	backoff      bool
}

// NewController starts fully open (fraction 1).
func NewController(cfg ControllerConfig) (*Controller, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Controller{cfg: cfg, fraction: 1}, nil
}

// Fraction is the share of sheddable requests to admit.
func (c *Controller) Fraction() float64 { return c.fraction }

// Shedding reports whether an overload episode is under way (after the
// enter hysteresis, until the exit hysteresis).
func (c *Controller) Shedding() bool { return c.shedding }

// Backoff reports whether the fraction is held because shedding has not
// cleared the overload within BackoffWindow.
func (c *Controller) Backoff() bool { return c.backoff }

// Observe feeds one read of the bit taken at now.
func (c *Controller) Observe(overloaded bool, now time.Time) {
	if !c.started || overloaded != c.bit {
		c.bit, c.bitSince, c.started = overloaded, now, true
	}
	held := now.Sub(c.bitSince)
	switch {
	case overloaded && !c.shedding && held >= c.cfg.EnterAfter:
		c.shedding = true
		c.episodeStart = now
		c.backoff = false
		c.decrease(now)
	case !overloaded && c.shedding && held >= c.cfg.ExitAfter:
		c.shedding = false
		c.backoff = false
		c.lastStep = now
	}
	if now.Sub(c.lastStep) < c.cfg.Step {
		return
	}
	switch {
	case c.shedding && overloaded:
		if c.cfg.BackoffWindow > 0 && now.Sub(c.episodeStart) >= c.cfg.BackoffWindow {
			c.backoff = true
			c.lastStep = now
			return
		}
		c.decrease(now)
	case !c.shedding && !overloaded && c.fraction < 1:
		c.fraction = min(1, c.fraction+c.cfg.Increase)
		c.lastStep = now
	}
}

func (c *Controller) decrease(now time.Time) {
	c.fraction = max(c.cfg.Floor, c.fraction*c.cfg.Decrease)
	c.lastStep = now
}
